import {
  BadRequestException,
  ForbiddenException,
  Injectable,
} from '@nestjs/common';
import { INVALID_RESUME_TOKEN, RESUME_REFUSED } from '../messages';
import type { EnvelopeLink, ResumableSessions } from './envelope-link';

/** `<session id>.<secret>`, 16 random bytes each in base64url. */
const TOKEN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$/;

/**
 * The reliable sessions of this instance, by id, from their start to their end (connected or
 * waiting for their client): what a resume token is checked against.
 */
@Injectable()
export class ResumableSessionRegistry implements ResumableSessions {
  private readonly links = new Map<string, EnvelopeLink>();

  add(link: EnvelopeLink): void {
    this.links.set(link.id, link);
  }

  remove(link: EnvelopeLink): void {
    if (this.links.get(link.id) === link) this.links.delete(link.id);
  }

  /**
   * The session `token` resumes, or `undefined` when this instance has none by its id (it
   * expired, or another instance made it): the client then gets a new session. Nothing about
   * the session changes here.
   * @throws BadRequestException (400) for a token that is not one
   * @throws ForbiddenException (403) for a wrong secret, or a token of another endpoint or user
   */
  find(
    token: string,
    endpoint: string,
    user: string | undefined,
  ): EnvelopeLink | undefined {
    const match = TOKEN.exec(token);
    if (!match) throw new BadRequestException(INVALID_RESUME_TOKEN);
    const link = this.links.get(match[1]);
    if (!link) return undefined;
    if (
      !link.accepts(Buffer.from(match[2], 'base64url')) ||
      link.endpoint !== endpoint ||
      link.user !== user
    ) {
      throw new ForbiddenException(RESUME_REFUSED);
    }
    return link;
  }
}
