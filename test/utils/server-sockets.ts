import type { INestApplication } from '@nestjs/common';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { within } from './within';

/**
 * The server side of every TCP connection an app accepts, by the client's port: a peer that never
 * ends its side cannot see the server close its socket (TCP tells it nothing after the FIN), so
 * the test watches the server's socket instead.
 */
export class ServerSockets {
  private readonly server: Server;
  private readonly sockets = new Map<
    number,
    { socket: Socket; closed: Promise<void> }
  >();
  private readonly onConnection = (socket: Socket) => {
    const closed = new Promise<void>((resolve) =>
      socket.once('close', resolve),
    );
    this.sockets.set(socket.remotePort!, { socket, closed });
  };

  constructor(app: INestApplication) {
    this.server = app.getHttpServer();
    this.server.on('connection', this.onConnection);
  }

  /** Resolves once the server has closed its socket of the connection from client port `port`. */
  closed(port: number, timeout = 2000): Promise<void> {
    const entry = this.sockets.get(port);
    if (!entry)
      return Promise.reject(new Error(`No connection from port ${port}.`));
    return within(
      entry.closed,
      timeout,
      `the server never closed its socket of the connection from port ${port}`,
    );
  }

  /** `server.getConnections()`: the connections the server holds open. */
  count(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.getConnections((error, count) =>
        error ? reject(error) : resolve(count),
      ),
    );
  }

  /** Stops watching, and destroys what the server left open, so that a failed test cannot hang `app.close()`. */
  dispose(): void {
    this.server.off('connection', this.onConnection);
    for (const { socket } of this.sockets.values()) socket.destroy();
    this.sockets.clear();
  }
}
