import type { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import type { InboundQueue } from '../transport/inbound-queue';
import type { TransportState } from '../transport/ws-transport';

/**
 * What a session sends through and reads from: one connection (`WsTransport`) in plain mode;
 * in reliable mode a link that outlives its connections, `reconnecting` between them.
 */
export interface SessionLink {
  readonly inbound: InboundQueue;
  readonly state: TransportState | 'reconnecting';
  /** How the session's connection ended; `undefined` until it has. */
  readonly disconnect?: WebSocketDisconnect;
  readonly protocol: string;
  readonly bufferedAmount: number;
  /** Whether a send now would wait (the peer is slow, or the replay buffer full). */
  readonly congested: boolean;
  send(payload: string | Buffer, binary: boolean, fin: boolean): Promise<void>;
  close(code: number, reason: string): void;
  end(code: number, reason: string): void;
  terminate(): void;
}
