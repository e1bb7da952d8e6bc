import type { WebSocketContext } from 'nestjs-ws-endpoints';
import type { WsTransport } from '../../src/lib/transport/ws-transport';

/**
 * The connection under a session, to read what it holds (unread messages and bytes, whether
 * reading is paused): the bounds under test are on what the transport holds, which the heap
 * would show only through the garbage collector's timing.
 */
export function transportOf(context: WebSocketContext): WsTransport {
  return (context as unknown as { transport: WsTransport }).transport;
}
