import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import { USER_ID_FAILED } from '../messages';

const logger = new SafeLogger('WsEndpoints');

/**
 * An endpoint's `userId` option made total: the id as a string, or `undefined` when there is
 * none or the option throws (logged once for each call).
 */
export function userIdOf(
  endpoint: string,
  userId: (user: any) => string | number | undefined,
): (user: unknown) => string | undefined {
  return (user) => {
    try {
      const id = userId(user);
      return id === undefined || id === null ? undefined : String(id);
    } catch (error) {
      logger.error(USER_ID_FAILED(endpoint), describeError(error));
      return undefined;
    }
  };
}
