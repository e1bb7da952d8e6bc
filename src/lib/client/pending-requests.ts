import { Frame, type RequestFailure } from '../protocol/envelope';
import { ClientMessage, RequestError } from './client-message';
import { parseJson } from './frames';
import type { Outgoing } from './outbox';

interface PendingRequest {
  item: Outgoing;
  resolve(message: ClientMessage): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** Requests waiting for their reply, by id; each fails with 408 after its timeout. */
export class PendingRequests {
  private readonly pending = new Map<string, PendingRequest>();

  /** The reply to the request `item` (which has an id), or its failure; `expired` after `timeout`. */
  add(
    item: Outgoing,
    timeout: number,
    expired: () => void,
  ): Promise<ClientMessage> {
    return new Promise((resolve, reject) => {
      const id = item.id!;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        expired();
        reject(new RequestError(408, 'Request timed out'));
      }, timeout);
      this.pending.set(id, { item, resolve, reject, timer });
    });
  }

  /** What waits for a reply. */
  items(): Outgoing[] {
    return Array.from(this.pending.values(), (request) => request.item);
  }

  /** Settles request `id` with a reply or a failure frame; the request it was, if any. */
  settle(
    id: string,
    kind: string,
    payload: string | Uint8Array,
  ): Outgoing | undefined {
    const request = this.pending.get(id);
    if (!request) return undefined;
    this.pending.delete(id);
    clearTimeout(request.timer);
    if (kind === Frame.Reply) {
      request.resolve(new ClientMessage(payload));
    } else {
      const failure = parseJson<RequestFailure>(payload);
      request.reject(
        new RequestError(
          failure?.status ?? 500,
          failure?.message ?? 'Request failed',
        ),
      );
    }
    return request.item;
  }

  /** Fails every request: the client is closed. */
  failAll(error: Error): void {
    for (const request of this.pending.values()) {
      clearTimeout(request.timer);
      request.reject(error);
    }
    this.pending.clear();
  }
}

/** A request id: a random UUID where the platform has one. */
export function requestId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } })
    .crypto;
  return (
    crypto?.randomUUID?.() ??
    `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`
  );
}
