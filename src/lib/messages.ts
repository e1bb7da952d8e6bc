import { MAX_GROUP_NAME } from './protocol/envelope';
import { describeCloseCode } from './context/close-code.enum';

export const DUPLICATE_ENDPOINT = (
  path: string,
  first: string,
  second: string,
) =>
  `WebSocket path "${path}" is declared by both ${first} and ${second}. Give one of them another path.`;

export const INVALID_CLOSE_CODE = (code: unknown) =>
  `Invalid close code ${String(code)}: use 1000, 1001–1003, 1007–1014 or 3000–4999 (1004–1006 and 1015 are reserved).`;

export const CLOSE_REASON_TOO_LONG = (bytes: number) =>
  `The close reason is ${bytes} bytes long; a close reason may be at most 123 bytes of UTF-8.`;

export const SOCKET_CLOSED = (action: string, code: number | undefined) =>
  `Cannot ${action}: the socket is closed${code ? ` (${describeCloseCode(code)})` : ''}.`;

export const CLOSE_SENT = (action: string, code: number) =>
  `Cannot ${action}: a close frame (${describeCloseCode(code)}) has been sent.`;

export const CLOSE_RECEIVED = (action: string) =>
  `Cannot ${action}: the peer is closing the connection.`;

export const UPGRADE_REQUIRED = (path: string) =>
  `${path} is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket).`;

export const ENDPOINT_MAPPED = (path: string, name: string) =>
  `Mapped {${path}, WS} to ${name}`;

export const NOT_FOUND = (method: string, url: string) =>
  `Cannot ${method} ${url}`;

export const INVALID_JSON = 'Invalid JSON';

export const INVALID_SIGNAL =
  'receive(): options.signal must be an AbortSignal (new AbortController().signal, AbortSignal.timeout(ms)).';

export const CLOSE_REASON_NOT_TEXT = (reason: unknown) =>
  `The close reason must be a string, got ${typeof reason}.`;

export const FILTER_UNSETTLED = (endpoint: string, ms: number) =>
  `An exception filter of WebSocket handler ${endpoint} did not settle within closeTimeout (${ms} ms); the connection is closed with the error's default code`;

export const SHUTTING_DOWN = 'Server shutting down';

export const HANDSHAKE_TIMED_OUT = (path: string) =>
  `The upgrade to ${path} was neither accepted nor refused within handshakeTimeout, and was answered 503: a middleware, guard, pipe or interceptor did not settle.`;

export const INVALID_VERSION =
  'Missing or invalid Sec-WebSocket-Version header';

export const SESSION_NOT_STARTED = (path: string) =>
  `The WebSocket session on ${path} could not start after the handshake; closed with 1011`;

export const PLATFORM_FAILED = (path: string) =>
  `The HTTP platform failed to route the upgrade to ${path}`;

export const UNANSWERED_UPGRADE = (endpoint: string) =>
  `The interceptors of WebSocket handler ${endpoint} completed without calling next.handle(): the upgrade was refused with 500. Let upgrades pass with \`if (isWebSocketUpgrade(context)) return next.handle();\`.`;

export const REFUSAL_FAILED = (path: string) =>
  `Answering a refused upgrade to ${path} failed; answered 500 instead`;

export const FILTER_FAILED = (endpoint: string) =>
  `An exception filter failed on an error of WebSocket handler ${endpoint}; after the upgrade it sees host.getType() === 'ws'`;

export const HANDLER_FAILED = (endpoint: string) =>
  `WebSocket handler ${endpoint} failed`;

export const MISSING_HTTP_SERVER =
  'WsEndpointsModule found no HTTP server: @Ws endpoints need an HTTP application (NestFactory.create), not a standalone context or microservice.';

export const SLOW_CONSUMER = 'Slow consumer';

export const NO_COMMON_PROTOCOL = (offered: string[], supported: string[]) =>
  `None of the offered subprotocols (${offered.join(', ')}) is supported; this endpoint speaks ${
    supported.length ? supported.join(', ') : 'no subprotocol'
  }.`;

export const ORIGIN_REFUSED = (origin: string, path: string, rule: string) =>
  `Refused a WebSocket upgrade to ${path} from origin ${origin} (${rule}). To allow it, add it to allowedOrigins in WsEndpointsModule.forRoot() or @Ws(path, { allowedOrigins }).`;

export const UNSUPPORTED_PLATFORM = (adapter: string) =>
  `WsEndpointsModule cannot route upgrade requests through ${adapter}: use @nestjs/platform-express or @nestjs/platform-fastify.`;

export const INVALID_OPTION = (
  where: string,
  name: string,
  expected: string,
  value: unknown,
) =>
  `Invalid WebSocket option ${name} of ${where}: expected ${expected}, got ${
    typeof value === 'function'
      ? 'a function'
      : (JSON.stringify(value) ?? String(value))
  }.`;

export const INVALID_ENVELOPE = 'Invalid envelope';

export const FRAGMENTS_IN_ENVELOPE =
  'Cannot send a fragment (fin: false) on an endpoint with reliable or requests: each message is one frame of the envelope.';

export const SESSION_EXPIRED =
  'The connection dropped and the client did not resume the session within resumeWindow.';

export const INVALID_RESUME_TOKEN = 'Invalid resume token';

export const RESUME_REFUSED = 'This resume token is not yours';

export const NOT_A_REQUEST = (what: string) =>
  `Cannot reply to ${what}: only a message the client sent as a request (message.id is set) has a reply.`;

export const ALREADY_REPLIED = (id: string) =>
  `Request ${id} has already been replied to.`;

export const REQUEST_STORE_FAILED =
  'The idempotency store failed; the request is answered 503 and processed by no one';

export const USER_ID_FAILED = (endpoint: string) =>
  `The userId option of WebSocket handler ${endpoint} threw; the session has no user id`;

export const INVALID_GROUP = (group: unknown) =>
  typeof group !== 'string' || group === ''
    ? `A group is named by a non-empty string, got ${typeof group === 'string' ? '""' : typeof group}.`
    : group.length > MAX_GROUP_NAME
      ? `A group's name has at most ${MAX_GROUP_NAME} characters, got ${group.length}.`
      : "A group's name must be well-formed Unicode: it has a lone surrogate.";

export const INVALID_META =
  "A presence's meta must have a JSON form that JSON.stringify can make (socket.join(group, { meta })).";

/** How the logs name a group's stream; `''` is the stream of toUser, all() and several groups. */
const streamName = (group: string) =>
  group === ''
    ? 'the broadcasts to users, to all and to several groups'
    : `group "${group}"`;

export const GROUP_HISTORY_RESET = (group: string) =>
  `The history of ${streamName(group)} started over (the broker restarted empty, or the group was idle past its TTL): messages sent to it just before may not have reached this instance's members.`;

export const GROUP_MESSAGES_LOST = (group: string, detail?: string) =>
  detail === undefined
    ? `Messages of ${streamName(group)} did not reach this instance and its history no longer has them; reliable members are told (their client emits 'lost').`
    : `Could not read the history of ${streamName(group)} to fill a gap: ${detail}. The next position check tries again.`;

export const BROKER_AWAY = (detail: string) =>
  `Redis is away (${detail}): this instance's sessions still get what is published here, and publications are held until it is back.`;

export const BROKER_BACK =
  'Redis is back: the publications held meanwhile are being published.';

export const BROADCAST_LOST =
  "Broadcasts are being lost: Redis has been away longer than the backplane's `outage` bounds hold them (their send() resolves false). This is said once per outage.";

export const PRESENCE_FAILED = (group: string, detail: string) =>
  `Presence of group "${group}" could not be updated: ${detail}. The next refresh tries again.`;
