import {
  CanActivate,
  ExecutionContext,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { IncomingMessage } from 'node:http';

/** Who a chat token names. */
export interface ChatUser {
  id: string;
}

/** The subprotocol that carries a token: `bearer.<token>`, offered beside the chat's own. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';

/** `CHAT_TOKENS` when the environment does not set it: two demo users. */
export const DEFAULT_CHAT_TOKENS = 'alice:alice-token,bob:bob-token';

const TOKEN_REQUIRED =
  'A chat token is required: "Authorization: Bearer <token>", "?token=<token>", or the subprotocol "bearer.<token>".';

/**
 * Lets in an upgrade request that carries a token listed in `CHAT_TOKENS` (`user:token,…`), and
 * sets `request.user` to the user it names; anything else gets 401. The token may come as
 * `Authorization: Bearer <token>`, as `?token=<token>`, or as a subprotocol `bearer.<token>`:
 * a browser's WebSocket can set no header, but it can offer subprotocols, which stay out of
 * URLs and their logs.
 */
@Injectable()
export class ChatTokenGuard implements CanActivate {
  private readonly users: ReadonlyMap<string, ChatUser>;

  constructor(config: ConfigService) {
    this.users = parseChatTokens(
      config.get<string>('CHAT_TOKENS') || DEFAULT_CHAT_TOKENS,
    );
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context
      .switchToHttp()
      .getRequest<IncomingMessage & { user?: ChatUser }>();
    const token = tokenOf(request);
    const user = token === undefined ? undefined : this.users.get(token);
    if (!user) throw new UnauthorizedException(TOKEN_REQUIRED);
    request.user = user;
    return true;
  }
}

/** The token a request carries, in the first of the three places that has one. */
function tokenOf(request: IncomingMessage): string | undefined {
  const [scheme, credentials] = request.headers.authorization?.split(' ') ?? [];
  if (scheme?.toLowerCase() === 'bearer' && credentials) return credentials;
  const query = new URL(request.url ?? '/', 'http://localhost').searchParams;
  const token = query.get('token');
  if (token) return token;
  return request.headers['sec-websocket-protocol']
    ?.split(',')
    .map((protocol) => protocol.trim())
    .find((protocol) => protocol.startsWith(BEARER_PROTOCOL_PREFIX))
    ?.slice(BEARER_PROTOCOL_PREFIX.length);
}

/**
 * The users of `user:token,user:token`, by token.
 * @throws Error naming the entry that is not `user:token` (but not its token)
 */
function parseChatTokens(setting: string): Map<string, ChatUser> {
  const users = new Map<string, ChatUser>();
  setting.split(',').forEach((entry, index) => {
    if (!entry.trim()) return;
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon).trim();
    const token = entry.slice(colon + 1).trim();
    if (colon < 0 || !id || !token) {
      throw new Error(
        `CHAT_TOKENS must list user:token pairs separated by commas; entry ${index + 1} is not one.`,
      );
    }
    users.set(token, { id });
  });
  return users;
}
