import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { SessionEnvelope } from '../context/websocket-context';
import type { WsEndpointDefinition } from '../discovery/ws-endpoint-explorer';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import type { WsEndpointsModuleOptions } from '../interfaces/ws-endpoint-options.interface';
import { REQUEST_STORE_FAILED } from '../messages';
import { ACK_PARAM, RESUME_PARAM } from '../protocol/envelope';
import { WS_ENDPOINTS_OPTIONS } from '../ws-endpoints.module-definition';
import type { EnvelopeLink } from './envelope-link';
import type { IdempotencyStore } from './idempotency-store';
import { MemoryIdempotencyStore } from './memory-idempotency-store';
import { ResumableSessionRegistry } from './resumable-session-registry';

/** A connection that asks to resume a session, and what it says it has. */
export interface ResumeRequest {
  token: string;
  /** The last of the server's messages the client has. */
  ack: number;
}

/**
 * What the endpoints with `reliable` or `requests` share: the idempotency store, the reliable
 * sessions a resume token can name, and each endpoint's envelope settings.
 */
@Injectable()
export class EnvelopeEndpoints implements OnApplicationShutdown {
  private readonly logger = new SafeLogger('WsEndpoints');
  private readonly store: IdempotencyStore;

  constructor(
    private readonly resumable: ResumableSessionRegistry,
    @Inject(WS_ENDPOINTS_OPTIONS) options: WsEndpointsModuleOptions,
  ) {
    this.store = options.idempotencyStore ?? new MemoryIdempotencyStore();
  }

  /** How an endpoint's sessions speak the envelope; `undefined` when they do not. */
  settings({
    name,
    options,
  }: WsEndpointDefinition): SessionEnvelope | undefined {
    const { reliable, requests } = options;
    if (!requests) return undefined;
    return {
      endpoint: name,
      requests: { store: this.store, window: requests.window },
      reliable: reliable
        ? { ...reliable, sessions: this.resumable }
        : undefined,
    };
  }

  /**
   * The session a connection asks to resume: `undefined` when this instance has none by the
   * token's id (a new session starts). The token must be the session's current one, of this
   * endpoint and of the user the guards accepted.
   * @throws BadRequestException (400) for a token that is not one, ForbiddenException (403) for any other mismatch
   */
  find(
    resume: ResumeRequest,
    envelope: SessionEnvelope,
    userId: string | undefined,
  ): EnvelopeLink | undefined {
    return this.resumable.find(resume.token, envelope.endpoint, userId);
  }

  /** The store lets go of the connections it made. */
  async onApplicationShutdown(): Promise<void> {
    try {
      await this.store.close?.();
    } catch (error) {
      this.logger.error(REQUEST_STORE_FAILED, describeError(error));
    }
  }
}

/** The resume token and ack of a connection that continues a reliable session, if it is one. */
export function resumeRequestOf(
  request: IncomingMessage,
): ResumeRequest | undefined {
  const url = request.url ?? '';
  const query = url.indexOf('?');
  if (query < 0) return undefined;
  const params = new URLSearchParams(url.slice(query + 1));
  const token = params.get(RESUME_PARAM);
  if (token === null) return undefined;
  const ack = Number(params.get(ACK_PARAM));
  return { token, ack: Number.isSafeInteger(ack) && ack > 0 ? ack : 0 };
}
