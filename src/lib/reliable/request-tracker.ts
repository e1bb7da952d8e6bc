import type { WebSocketMessage } from '../context/websocket-message';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import {
  ALREADY_REPLIED,
  NOT_A_REQUEST,
  REQUEST_STORE_FAILED,
} from '../messages';
import { Frame, type RequestFailure } from '../protocol/envelope';
import type { EnvelopeLink } from './envelope-link';
import type { IdempotencyStore, StoredReply } from './idempotency-store';

/** An endpoint's request settings. */
export interface RequestSettings {
  store: IdempotencyStore;
  /** ms a request id and its reply are remembered. */
  window: number;
}

const logger = new SafeLogger('Requests');

/**
 * ms a claim lasts unless its session, still working on the request, extends it (every third of
 * it): a claim of an instance that crashed lapses within this, and a retry is then processed.
 */
export const CLAIM_LEASE = 10_000;

/**
 * The requests of one session: each request id is claimed in the idempotency store before the
 * handler sees it, so that a duplicate (a client's retry after a drop, on this instance or
 * another sharing the store) is answered with the stored reply, or waits for the reply of the
 * first while that is being processed, and never reaches the handler twice. Ids are scoped to
 * the endpoint and the user. A claim the session leaves unanswered is released when it ends.
 */
export class RequestTracker {
  /** Ids this session claimed and has not answered. */
  private readonly open = new Set<string>();
  /** Extends the claims in `open` while there are any. */
  private renewal?: NodeJS.Timeout;

  constructor(
    private readonly link: EnvelopeLink,
    private readonly settings: RequestSettings,
    /** The endpoint and user the ids belong to. */
    private readonly scope: string,
  ) {}

  /**
   * Whether the handler gets `message`, a request: yes the first time; a duplicate is answered
   * here (after the first's reply, if it is still being processed) and skipped. A store that
   * fails answers the request with 503, processed by no one.
   */
  async admit(message: WebSocketMessage): Promise<boolean> {
    const id = message.id!;
    if (this.open.has(id)) return false; // sent twice while we work on it: one reply will do
    const { store, window } = this.settings;
    const key = this.key(id);
    const deadline = Date.now() + window;
    for (;;) {
      let reply: StoredReply | undefined;
      try {
        const claim = await store.claim(key, Math.min(window, CLAIM_LEASE));
        if (claim.status === 'new') {
          this.hold(id);
          return true;
        }
        // a claim that lapses (its instance crashed) is taken over: looked at again at least
        // once a lease
        reply =
          claim.status === 'done'
            ? claim.reply
            : await store.wait(
                key,
                Math.min(deadline - Date.now(), CLAIM_LEASE),
              );
      } catch (error) {
        logger.error(REQUEST_STORE_FAILED, describeError(error));
        reply = failure(503, 'Request store unavailable');
      }
      if (reply) {
        await this.answer(id, reply);
        return false;
      }
      // the first claim was released or lapsed unanswered: claim it again, within the window
      if (Date.now() >= deadline) return false;
    }
  }

  /** Answers request `message` with `payload`, kept for its duplicates first. */
  async reply(
    message: WebSocketMessage,
    payload: string | Buffer,
    binary: boolean,
    kind: StoredReply['kind'] = Frame.Reply,
  ): Promise<void> {
    const id = message.id;
    if (id === undefined) throw new TypeError(NOT_A_REQUEST('a message'));
    if (!this.open.delete(id)) throw new Error(ALREADY_REPLIED(id));
    if (!this.open.size) this.stopRenewal();
    const reply: StoredReply = {
      kind,
      data:
        typeof payload === 'string'
          ? payload
          : payload.toString(binary ? 'base64' : 'utf8'),
      binary,
    };
    try {
      await this.settings.store.complete(
        this.key(id),
        reply,
        this.settings.window,
      );
    } catch (error) {
      logger.error(REQUEST_STORE_FAILED, describeError(error));
    }
    return this.link.sendFrame(kind, payload, binary, id);
  }

  /** Claims `id` for this session, and extends its claims until they are answered or released. */
  private hold(id: string): void {
    this.open.add(id);
    this.renewal ??= setInterval(() => {
      const { store, window } = this.settings;
      for (const open of this.open) {
        store
          .extend(this.key(open), Math.min(window, CLAIM_LEASE))
          .catch((error: unknown) => {
            logger.error(REQUEST_STORE_FAILED, describeError(error));
          });
      }
    }, CLAIM_LEASE / 3).unref();
  }

  private stopRenewal(): void {
    clearInterval(this.renewal);
    this.renewal = undefined;
  }

  /** The session ended: its unanswered claims are released, so that a retry is processed. */
  release(): void {
    this.stopRenewal();
    for (const id of this.open) {
      this.settings.store.release(this.key(id)).catch((error: unknown) => {
        logger.error(REQUEST_STORE_FAILED, describeError(error));
      });
    }
    this.open.clear();
  }

  private answer(id: string, reply: StoredReply): Promise<void> {
    const payload = reply.binary
      ? Buffer.from(reply.data, 'base64')
      : reply.data;
    return this.link.sendFrame(reply.kind, payload, reply.binary, id);
  }

  private key(id: string): string {
    return `${this.scope}\u0000${id}`;
  }
}

/** A failure reply: `{"status","message"}`. */
function failure(status: number, message: string | string[]): StoredReply {
  const body: RequestFailure = { status, message };
  return { kind: Frame.Failure, data: JSON.stringify(body), binary: false };
}
