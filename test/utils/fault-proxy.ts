import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

/** Which way bytes travel through a {@link FaultProxy}: `up` from the client to the server, `down` back. */
export type Direction = 'up' | 'down';

/** Where a {@link FaultProxy} forwards the connections it accepts. */
export interface FaultProxyTarget {
  /** @default '127.0.0.1' */
  host?: string;
  port: number;
}

/** A cut of one connection: the first `bytes` bytes in `direction` get through, the next byte cuts it. */
export interface ScheduledCut {
  direction: Direction;
  bytes: number;
}

/** Bytes of one direction of one connection. */
export interface FlowCounts {
  /** bytes written to the far side */
  readonly forwarded: number;
  /** bytes read and held back: stalled, or waiting for the far side to drain */
  readonly held: number;
  /** bytes read and thrown away: blackholed, past a cut, or once the connection began to close */
  readonly dropped: number;
}

/**
 * `open`: forwarding. `blackholed`: dropping everything, each socket left to its own peer.
 * `closing`: a cut or an end is flushed to one side, then both sockets are destroyed.
 * `closed`: both sockets have closed.
 */
export type ConnectionState = 'open' | 'blackholed' | 'closing' | 'closed';

/** One connection through a {@link FaultProxy}. */
export interface ConnectionStats {
  readonly state: ConnectionState;
  readonly up: FlowCounts;
  readonly down: FlowCounts;
}

/** Past this many held bytes a flow stops reading its source, so that a stall pushes back on the sender. */
const HOLD_LIMIT = 64 * 1024;

/** One direction of a connection: reads its source, writes its destination, counts every byte. */
class Flow implements FlowCounts {
  forwarded = 0;
  held = 0;
  dropped = 0;
  private readonly queue: Buffer[] = [];
  private ended = false;
  /** the destination's write buffer is full: wait for its 'drain' */
  private blocked = false;

  constructor(
    private readonly link: Link,
    readonly source: Socket,
    readonly destination: Socket,
    /** bytes still allowed through before the cut; undefined: no cut */
    private budget: number | undefined,
  ) {
    source.on('data', (chunk: Buffer) => this.receive(chunk));
    source.on('end', () => this.onEnd());
    destination.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
  }

  /** Forwards what is held, as far as the connection's state, the stall and the destination allow. */
  pump(): void {
    if (this.link.state === 'open') {
      while (this.queue.length > 0 && !this.blocked && !this.link.isStalled()) {
        const chunk = this.queue.shift()!;
        this.held -= chunk.length;
        if (!this.forward(chunk)) return;
      }
      // the end is part of the stream: it waits behind held bytes and the stall like they do
      if (this.ended && this.queue.length === 0 && !this.link.isStalled()) {
        this.link.closeAfter(this.destination);
        return;
      }
    }
    this.updateReading();
  }

  /** Throws away what is held (the connection stopped forwarding). */
  drop(): void {
    for (const chunk of this.queue.splice(0)) this.dropped += chunk.length;
    this.held = 0;
    this.updateReading();
  }

  /** Whether the source's peer has ended its side and nothing else may come from it. */
  get hasEnded(): boolean {
    return this.ended;
  }

  private receive(chunk: Buffer): void {
    if (this.link.state !== 'open') {
      this.dropped += chunk.length;
      return;
    }
    this.queue.push(chunk);
    this.held += chunk.length;
    this.pump();
  }

  private onEnd(): void {
    this.ended = true;
    // a vanished network carries no FIN: only the peer that sent it learns that its socket closed
    if (this.link.state === 'blackholed') this.source.destroy();
    else this.pump();
  }

  /** Writes `chunk` up to the cut; false once the cut has happened. */
  private forward(chunk: Buffer): boolean {
    if (this.budget !== undefined && chunk.length > this.budget) {
      const part = chunk.subarray(0, this.budget);
      this.forwarded += part.length;
      this.dropped += chunk.length - part.length;
      this.link.closeAfter(this.destination, part);
      return false;
    }
    if (this.budget !== undefined) this.budget -= chunk.length;
    this.forwarded += chunk.length;
    if (!this.destination.write(chunk)) this.blocked = true;
    return true;
  }

  private updateReading(): void {
    // once not forwarding, keep reading (and dropping) so that no unread byte turns a close into a reset
    const hold =
      this.link.state === 'open' && (this.blocked || this.held >= HOLD_LIMIT);
    if (hold) this.source.pause();
    else this.source.resume();
  }
}

/** One connection through the proxy: the client's socket, the socket to the server, a flow each way. */
class Link implements ConnectionStats {
  state: ConnectionState = 'open';
  readonly up: Flow;
  readonly down: Flow;
  /** Resolves once both sockets have closed. */
  readonly closed: Promise<void>;
  private openSockets = 2;
  private resolveClosed!: () => void;

  constructor(
    private readonly client: Socket,
    private readonly server: Socket,
    cut: ScheduledCut | undefined,
    readonly isStalled: () => boolean,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    for (const socket of [client, server]) {
      socket.setNoDelay(true);
      socket.on('error', () => {
        if (this.state !== 'blackholed') this.abort();
      });
      socket.on('close', () => this.onSocketClose());
    }
    const budget = (direction: Direction) =>
      cut?.direction === direction ? cut.bytes : undefined;
    this.up = new Flow(this, client, server, budget('up'));
    this.down = new Flow(this, server, client, budget('down'));
  }

  /** Stops forwarding without closing anything: from now on both flows drop what they read. */
  blackhole(): void {
    if (this.state !== 'open') return;
    this.state = 'blackholed';
    for (const flow of [this.up, this.down]) {
      flow.drop();
      if (flow.hasEnded) flow.source.destroy();
    }
  }

  /** Forwards what a stall held. */
  resume(): void {
    this.up.pump();
    this.down.pump();
  }

  /** Writes `last` to `destination`, ends it, then destroys both sockets; nothing else is forwarded. */
  closeAfter(destination: Socket, last?: Buffer): void {
    this.state = 'closing';
    this.up.drop();
    this.down.drop();
    destination.once('finish', () => this.abort());
    if (last && last.length > 0) destination.write(last);
    destination.end();
  }

  /** Destroys both sockets now. */
  abort(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'closing') {
      this.state = 'closing';
      this.up.drop();
      this.down.drop();
    }
    this.client.destroy();
    this.server.destroy();
  }

  private onSocketClose(): void {
    this.openSockets -= 1;
    if (this.openSockets === 0) {
      this.state = 'closed';
      this.resolveClosed();
    } else if (this.state !== 'blackholed') {
      this.abort();
    }
  }
}

/**
 * A TCP proxy between a WebSocket client and a server that injects network faults: cuts (at
 * once or after an exact byte count), stalls, half-open connections and refused connections.
 *
 * @example
 * const proxy = await FaultProxy.start({ port: serverPort });
 * proxy.schedule([{ direction: 'down', bytes: 0 }]); // the first connection never sees a byte back
 * const ws = new WebSocket(proxy.url('/chat'));
 * // …
 * await proxy.close();
 */
export class FaultProxy {
  private readonly links: Link[] = [];
  private readonly live = new Set<Link>();
  private cuts: Array<ScheduledCut | undefined> = [];
  private forwarding: 'flowing' | 'stalled' = 'flowing';
  private admission: 'allow' | 'refuse' = 'allow';

  private constructor(
    private readonly server: Server,
    private readonly target: Required<FaultProxyTarget>,
    /** The port the proxy listens on, on 127.0.0.1. */
    readonly port: number,
  ) {
    server.on('connection', (socket: Socket) => this.accept(socket));
  }

  /**
   * Listens on 127.0.0.1 on a free port, forwarding each connection to `target`.
   *
   * @param target where connections go; the host defaults to 127.0.0.1
   */
  static async start(target: FaultProxyTarget): Promise<FaultProxy> {
    if (
      !Number.isInteger(target.port) ||
      target.port < 1 ||
      target.port > 65535
    )
      throw new RangeError(
        `FaultProxy target port must be an integer in 1..65535, got ${target.port}.`,
      );
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    return new FaultProxy(
      server,
      { host: target.host ?? '127.0.0.1', port: target.port },
      port,
    );
  }

  /** `ws://127.0.0.1:<port><path>`: the URL a WebSocket client dials to go through the proxy. */
  url(path: string): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** Live connections through the proxy (a connection is live until both its sockets have closed). */
  get connections(): number {
    return this.live.size;
  }

  /** Connections accepted so far (refused ones not counted). */
  get accepted(): number {
    return this.links.length;
  }

  /** Every accepted connection, in the order accepted: its state and byte counts per direction, as of now. */
  get stats(): ConnectionStats[] {
    const counts = ({ forwarded, held, dropped }: FlowCounts) => ({
      forwarded,
      held,
      dropped,
    });
    return this.links.map(({ state, up, down }) => ({
      state,
      up: counts(up),
      down: counts(down),
    }));
  }

  /** Cuts every live connection now: destroys both sides (the peers see a close or a reset, no WebSocket close frame). */
  cutAll(): void {
    for (const link of this.live) link.abort();
  }

  /**
   * Cuts the next connections after an exact number of bytes: entry i applies to the i-th
   * connection accepted from now on (undefined: no cut). With `{ direction, bytes }`, the first
   * `bytes` bytes in `direction` are forwarded, and the next byte, in the middle of a chunk if need
   * be, cuts the connection: both sides are destroyed once those bytes are flushed. `bytes: 0` cuts
   * at the first byte in that direction. Replaces what is left of a previous schedule.
   *
   * @example proxy.schedule([undefined, { direction: 'up', bytes: 100 }]); // the second connection dies after 100 bytes up
   */
  schedule(cuts: ReadonlyArray<ScheduledCut | undefined>): void {
    for (const cut of cuts) {
      if (cut === undefined) continue;
      if (cut.direction !== 'up' && cut.direction !== 'down')
        throw new RangeError(
          `A cut's direction is 'up' or 'down', got ${String(cut.direction)}.`,
        );
      if (!Number.isSafeInteger(cut.bytes) || cut.bytes < 0)
        throw new RangeError(
          `A cut's bytes is an integer >= 0, got ${cut.bytes}.`,
        );
    }
    this.cuts = [...cuts];
  }

  /** Stops forwarding in both directions, on live and new connections: bytes are held, not dropped, until {@link resume}. */
  stall(): void {
    this.forwarding = 'stalled';
  }

  /** Forwards what {@link stall} held, then goes on forwarding. */
  resume(): void {
    this.forwarding = 'flowing';
    for (const link of this.live) link.resume();
  }

  /**
   * Makes every live connection half-open: from now on everything is dropped in both directions
   * and no socket is closed, not even when one peer ends or resets (a peer that vanished: no FIN,
   * no RST). Connections accepted afterwards are forwarded as usual.
   */
  blackhole(): void {
    for (const link of this.live) link.blackhole();
  }

  /** From now on destroys each new connection at once, with a reset (the server is unreachable), until {@link allow}. */
  refuse(): void {
    this.admission = 'refuse';
  }

  /** Accepts new connections again after {@link refuse}. */
  allow(): void {
    this.admission = 'allow';
  }

  /** Stops listening and destroys every connection; resolves once all their sockets have closed. */
  async close(): Promise<void> {
    this.admission = 'refuse';
    // the callback gets ERR_SERVER_NOT_RUNNING on a second close: closed either way
    const listenerClosed = new Promise<void>((resolve) =>
      this.server.close(() => resolve()),
    );
    const linksClosed = [...this.live].map((link) => link.closed);
    this.cutAll();
    await Promise.all([listenerClosed, ...linksClosed]);
  }

  private accept(client: Socket): void {
    if (this.admission === 'refuse') {
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    const server = connect({ ...this.target, allowHalfOpen: true });
    const link = new Link(
      client,
      server,
      this.cuts.shift(),
      () => this.forwarding === 'stalled',
    );
    this.links.push(link);
    this.live.add(link);
    void link.closed.then(() => this.live.delete(link));
  }
}
