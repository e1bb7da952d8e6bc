import { Controller, INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { isUtf8 } from 'node:buffer';
import type { EventEmitter } from 'node:events';
import { connect, Socket as NetSocket } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import {
  closePayload,
  DecodedFrame,
  decodeFrame,
  encodeFrame,
  FrameSpec,
  Opcode,
} from './utils/frames';
import { upgradeRequest } from './utils/raw-http';
import { ModelMessage, ModelOutcome, modelServer } from './utils/rfc6455-model';
import { propertySeed } from './utils/seed';
import { platforms, startApp } from './utils/test-app';

const MAX_PAYLOAD = 1024;
/** Sequences per platform, each on a connection of its own. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
// the seed is in the test's name; FUZZ_SEED and FUZZ_PATH (printed with a counterexample) replay a run
const SEED = propertySeed('FUZZ_SEED');
const PATH = process.env.FUZZ_PATH;
/** ms to wait for an event before the run fails. */
const WAIT = 3000;

const { Continuation, Text, Binary, Close, Ping, Pong } = Opcode;

/** What each connection's handler received, by the client's port. */
const delivered = new Map<number, ModelMessage[]>();

@Controller()
class EchoController {
  @Ws('echo', { maxPayload: MAX_PAYLOAD, heartbeat: false })
  async echo(@Socket() socket: WebSocketContext) {
    const messages: ModelMessage[] = [];
    delivered.set(socket.request.socket.remotePort!, messages);
    for await (const message of socket) {
      messages.push({
        opcode: message.type === 'text' ? Text : Binary,
        data: message.data,
      });
      // a message that came with the peer's close frame cannot be echoed: read on regardless
      await socket.send(message).catch(unlessDisconnected);
    }
  }
}

function unlessDisconnected(error: unknown): void {
  if (!(error instanceof WebSocketDisconnect)) throw error;
}

// ---- what a hostile client writes ----

/** A frame that prints itself briefly in a counterexample: `text[fin=0 unmasked](68656c6c6f)`. */
function frame(spec: FrameSpec): FrameSpec {
  return Object.assign(
    { ...spec },
    { [fc.toStringMethod]: () => briefly(spec) },
  );
}

const OPCODE_NAMES: Record<number, string> = {
  [Continuation]: 'cont',
  [Text]: 'text',
  [Binary]: 'binary',
  [Close]: 'close',
  [Ping]: 'ping',
  [Pong]: 'pong',
};

function briefly({
  opcode,
  payload = '',
  fin = true,
  rsv = 0,
  masked = true,
}: FrameSpec): string {
  const bytes = Buffer.from(payload);
  const shown =
    bytes.length <= 16
      ? bytes.toString('hex')
      : `${bytes.subarray(0, 8).toString('hex')}…(${bytes.length} B)`;
  const flags = [
    fin ? '' : 'fin=0',
    rsv ? `rsv=${rsv.toString(2).padStart(3, '0')}` : '',
    masked ? '' : 'unmasked',
  ].filter(Boolean);
  return `${OPCODE_NAMES[opcode] ?? `opcode${opcode}`}[${flags.join(' ')}](${shown})`;
}

const rarely = fc.oneof(
  { weight: 9, arbitrary: fc.constant(false) },
  { weight: 1, arbitrary: fc.constant(true) },
);
const bytes = (maxLength: number) =>
  fc.uint8Array({ maxLength }).map((array) => Buffer.from(array));
/** Sizes on either side of maxPayload, where 1009 starts. */
const nearLimit = fc.integer({ min: MAX_PAYLOAD - 6, max: MAX_PAYLOAD + 6 });

const shortUtf8 = fc
  .string({ unit: 'binary', maxLength: 20 })
  .map((text) => Buffer.from(text));
const utf8 = fc.oneof(
  { weight: 5, arbitrary: shortUtf8 },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('a', 'é', '€', '𝄞'), nearLimit)
      .map(([char, size]) =>
        Buffer.from(char.repeat(Math.round(size / Buffer.byteLength(char)))),
      ),
  },
);
/** Overlong, surrogate, above U+10FFFF, truncated, a lone continuation byte, 0xFF. */
const BROKEN_UTF8 = [
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
  [0x80],
  [0xff],
].map((sequence) => Buffer.from(sequence));
const withBrokenUtf8 = (valid: fc.Arbitrary<Buffer>) =>
  fc
    .tuple(valid, fc.constantFrom(...BROKEN_UTF8), fc.nat())
    .map(([text, broken, at]) => {
      const i = at % (text.length + 1);
      return Buffer.concat([text.subarray(0, i), broken, text.subarray(i)]);
    });
const binary = fc.oneof(
  { weight: 5, arbitrary: bytes(24) },
  {
    weight: 1,
    arbitrary: nearLimit.map((size) => Buffer.alloc(size, 0x5a)),
  },
);

const controlPayload = fc.oneof(
  { weight: 6, arbitrary: bytes(16) },
  // 125 is the most a control frame carries
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 124, max: 127 })
      .map((size) => Buffer.alloc(size, 0x70)),
  },
);
const pingOrPong = fc
  .tuple(fc.constantFrom(Ping, Pong), controlPayload)
  .map(([opcode, payload]) => frame({ opcode, payload }));

const CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011];
const NOT_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000];
const closeCode = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...CLOSE_CODES, 1012, 1014, 4999) },
  { weight: 1, arbitrary: fc.integer({ min: 3000, max: 4999 }) },
  { weight: 2, arbitrary: fc.constantFrom(...NOT_CLOSE_CODES, 65535) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 65535 }) },
);
const closeFrame = fc
  .oneof(
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
    {
      weight: 5,
      arbitrary: fc
        .tuple(
          closeCode,
          fc.oneof(
            { weight: 4, arbitrary: shortUtf8 },
            { weight: 1, arbitrary: withBrokenUtf8(shortUtf8) },
          ),
        )
        .map(([code, reason]) => closePayload(code, reason)),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => Buffer.of(b)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(...CLOSE_CODES),
          fc.integer({ min: 122, max: 126 }),
        )
        .map(([code, size]) => closePayload(code, Buffer.alloc(size, 0x72))),
    },
  )
  .map((payload) => frame({ opcode: Close, payload }));

/**
 * A text or binary message, maybe fragmented (cut anywhere, even inside a character), maybe with
 * pings and pongs between its fragments, maybe never finished.
 */
const dataMessage = fc
  .record({
    message: fc.oneof(
      {
        weight: 4,
        arbitrary: fc.tuple(fc.constant(Text), utf8),
      },
      {
        weight: 1,
        arbitrary: fc.tuple(fc.constant(Text), withBrokenUtf8(utf8)),
      },
      { weight: 4, arbitrary: fc.tuple(fc.constant(Binary), binary) },
    ),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
    between: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: pingOrPong },
      ),
      { maxLength: 3 },
    ),
    unfinished: rarely,
  })
  .map(({ message: [opcode, data], cuts, between, unfinished }) => {
    const at = [
      0,
      ...cuts.map((cut) => cut % (data.length + 1)).sort((a, b) => a - b),
      data.length,
    ];
    return at.slice(1).flatMap((end, i) => {
      const last = i === at.length - 2;
      const fragment = frame({
        opcode: i === 0 ? opcode : Continuation,
        payload: data.subarray(at[i], end),
        fin: last && !unfinished,
      });
      const control = between[i];
      return control && !last ? [fragment, control] : [fragment];
    });
  });

/** Any header at all: reserved opcodes, RSV bits, no FIN, no mask. */
const anyFrame = fc
  .record({
    opcode: fc.integer({ min: 0, max: 15 }),
    fin: fc.boolean(),
    rsv: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 7 })),
    masked: fc.oneof(
      { weight: 3, arbitrary: fc.constant(true) },
      { weight: 1, arbitrary: fc.constant(false) },
    ),
    payload: bytes(16),
  })
  .map(frame);

const continuation = fc
  .record({ fin: fc.boolean(), payload: shortUtf8 })
  .map(({ fin, payload }) => frame({ opcode: Continuation, fin, payload }));

const unit: fc.Arbitrary<FrameSpec[]> = fc.oneof(
  { weight: 12, arbitrary: dataMessage },
  { weight: 3, arbitrary: pingOrPong.map((f) => [f]) },
  { weight: 2, arbitrary: closeFrame.map((f) => [f]) },
  { weight: 1, arbitrary: continuation.map((f) => [f]) },
  { weight: 2, arbitrary: anyFrame.map((f) => [f]) },
);

/** One fault put into a frame of an otherwise well-formed sequence. */
const fault = fc.record({
  at: fc.nat(),
  change: fc.oneof(
    fc.integer({ min: 1, max: 7 }).map((rsv) => ({ rsv })),
    fc.constant({ masked: false }),
    fc.constant({ flipFin: true }),
    fc.constantFrom(3, 4, 5, 6, 7, 11, 15).map((opcode) => ({ opcode })),
  ),
});

type Chunking = 'all at once' | 'frame by frame' | number[];

const hostileClient = fc
  .record({
    units: fc.array(unit, { maxLength: 8 }),
    faults: fc.oneof(
      { weight: 4, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.array(fault, { minLength: 1, maxLength: 2 }) },
    ),
    // byte offsets (modulo the length) where a write ends: frames split anywhere, headers too
    chunking: fc.oneof(
      fc.constant<Chunking>('all at once'),
      fc.constant<Chunking>('frame by frame'),
      fc.uniqueArray(fc.nat({ max: 5000 }), { minLength: 1, maxLength: 6 }),
    ),
  })
  .map(({ units, faults, chunking }) => {
    const frames = units.flat();
    for (const { at, change } of faults) {
      if (!frames.length) break;
      const i = at % frames.length;
      const { flipFin, ...rest } = { flipFin: false, ...change };
      const fin = frames[i].fin ?? true;
      frames[i] = frame({
        ...frames[i],
        ...rest,
        fin: flipFin ? !fin : fin,
      });
    }
    return { frames, chunking };
  });

function writes(encoded: Buffer[], chunking: Chunking): Buffer[] {
  if (chunking === 'frame by frame') return encoded;
  const all = Buffer.concat(encoded);
  if (chunking === 'all at once' || !all.length) return [all];
  const ends = [
    ...new Set([...chunking.map((cut) => cut % all.length), all.length]),
  ]
    .filter((end) => end > 0)
    .sort((a, b) => a - b);
  return ends.map((end, i) => all.subarray(i ? ends[i - 1] : 0, end));
}

// ---- a raw client ----

/** Resolves once `ready()` holds, checked after each of `events`; fails loudly after WAIT ms. */
function until(
  emitter: EventEmitter,
  events: string[],
  ready: () => boolean,
  what: string,
): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => ready() && (done(), resolve());
    const timer = setTimeout(() => {
      done();
      reject(new Error(`Nothing after ${WAIT} ms: waiting for ${what}.`));
    }, WAIT);
    const done = () => {
      clearTimeout(timer);
      for (const event of events) emitter.off(event, check);
    };
    for (const event of events) emitter.on(event, check);
  });
}

/**
 * A WebSocket opened by hand over TCP, with a view of the server's end of it: `write` waits until
 * the server has read what was written, so that each write is a read of its own on the server.
 */
class ObservedConnection {
  private bytes = Buffer.alloc(0);
  private headEnd = -1;
  private closed = false;
  private written = 0;
  private serverRead = 0;
  private serverClosed = false;
  private server?: NetSocket;
  private localPort = 0;

  private constructor(readonly client: NetSocket) {
    client.setNoDelay(true);
    // a hostile client writes on after the server has ended: EPIPE, ECONNRESET
    client.on('error', () => undefined);
    client.on('data', (chunk: Buffer) => {
      this.bytes = Buffer.concat([this.bytes, chunk]);
      if (this.headEnd < 0 && this.bytes.includes('\r\n\r\n'))
        this.headEnd = this.bytes.indexOf('\r\n\r\n') + 4;
    });
    client.on('close', () => (this.closed = true));
  }

  static async open(
    port: number,
    serverSockets: Map<number, NetSocket>,
  ): Promise<ObservedConnection> {
    const connection = new ObservedConnection(connect(port, '127.0.0.1'));
    const { client } = connection;
    client.write(upgradeRequest('/echo'));
    await until(
      client,
      ['data', 'close'],
      () => connection.headEnd >= 0 || connection.closed,
      'the handshake',
    );
    expect(connection.bytes.subarray(0, 12).toString()).toBe('HTTP/1.1 101');
    const server = serverSockets.get(client.localPort!)!;
    serverSockets.delete(client.localPort!);
    server.on(
      'data',
      (chunk: Buffer) => (connection.serverRead += chunk.length),
    );
    server.on('close', () => (connection.serverClosed = true));
    connection.server = server;
    connection.localPort = client.localPort!;
    return connection;
  }

  get port(): number {
    return this.localPort;
  }

  /** Writes `chunk` and waits for the server to read it; false once either side has ended. */
  async write(chunk: Buffer): Promise<boolean> {
    if (!this.client.writable || this.serverClosed) return false;
    this.client.write(chunk);
    this.written += chunk.length;
    await until(
      this.server!,
      ['data', 'close'],
      () => this.serverRead >= this.written || this.serverClosed,
      `the server to read ${this.written} bytes`,
    );
    return true;
  }

  /** Waits until the server has sent `ready(frames)`, or closed; false if it has done neither in time. */
  received(ready: (frames: DecodedFrame[]) => boolean): Promise<boolean> {
    return until(
      this.client,
      ['data', 'close'],
      () => this.closed || ready(this.frames().frames),
      'the server to send',
    ).then(
      () => true,
      () => false,
    );
  }

  /** Waits for the server to end the connection; false if it has not in time. */
  whenClosed(): Promise<boolean> {
    return until(
      this.client,
      ['close'],
      () => this.closed,
      'the server to close',
    ).then(
      () => true,
      () => false,
    );
  }

  /** The frames the server sent since the 101, and the bytes of an incomplete last one. */
  frames(): { frames: DecodedFrame[]; rest: Buffer } {
    const frames: DecodedFrame[] = [];
    let rest = this.bytes.subarray(this.headEnd);
    for (let next = decodeFrame(rest); next; next = decodeFrame(rest)) {
      frames.push(next);
      rest = rest.subarray(next.size);
    }
    return { frames, rest };
  }

  destroy(): void {
    this.client.destroy();
  }
}

// ---- the property ----

interface Observed {
  delivered: string[];
  echoes: string[];
  pongs: string[];
  close: string;
  /** Frames an RFC 6455 server must not send: masked, fragmented, RSV bits, unexpected opcodes. */
  malformed: string[];
  /** Anything after the close frame, or an incomplete frame. */
  trailing: string[];
  /** Sessions the app still counts once every handler has settled. */
  sessions: number;
  /** Whether the server ended the TCP connection after the close frames (§7.1.1). */
  tcp: string;
}

/** What this endpoint's server may send: echoes, pongs, its close frame (heartbeats are off). */
const SERVER_OPCODES = new Set<number>([Text, Binary, Pong, Close]);

const show = (message: ModelMessage | DecodedFrame) =>
  `${message.opcode === Text ? 'text' : 'binary'} ${hex(
    'data' in message ? message.data : message.payload,
  )}`;
const hex = (data: Buffer) =>
  data.length > 40
    ? `${data.subarray(0, 16).toString('hex')}…(${data.length} B)`
    : data.toString('hex');
const showClose = (code: number | undefined) =>
  code === undefined ? 'close without a code' : `close ${code}`;

function observe(
  { frames, rest }: ReturnType<ObservedConnection['frames']>,
  {
    handler,
    sessions,
    ended,
  }: { handler: ModelMessage[]; sessions: number; ended: boolean },
): Observed {
  const end = frames.findIndex((f) => f.opcode === Close);
  const sent = end < 0 ? frames : frames.slice(0, end);
  const close = frames[end]?.payload;
  const closeCode = close?.length ? close.readUInt16BE(0) : undefined;
  return {
    delivered: handler.map(show),
    echoes: sent
      .filter((f) => f.opcode === Text || f.opcode === Binary)
      .map(show),
    pongs: sent.filter((f) => f.opcode === Pong).map((f) => hex(f.payload)),
    close: close
      ? showClose(closeCode) +
        (close.length > 2 && !isUtf8(close.subarray(2))
          ? ' (reason not UTF-8)'
          : '')
      : 'no close frame',
    malformed: frames
      .filter(
        (f) =>
          !f.fin ||
          f.rsv ||
          f.masked ||
          !SERVER_OPCODES.has(f.opcode) ||
          (f.opcode >= Close && f.payload.length > 125),
      )
      .map(
        (f) =>
          `${f.opcode}${f.fin ? '' : ' fin=0'} rsv=${f.rsv} masked=${f.masked}`,
      ),
    trailing: [
      ...(end < 0 ? [] : frames.slice(end + 1).map(show)),
      ...(rest.length ? [`${rest.length} bytes of an incomplete frame`] : []),
    ],
    sessions,
    tcp: ended ? 'ended' : `still open after ${WAIT} ms`,
  };
}

/** What the model says the test must observe; with the connection left open, the test's own close. */
function expectedFrom(model: ModelOutcome, observed: Observed): Observed {
  const messages = model.messages.map(show);
  return {
    delivered: messages,
    // the echo of a message that came with the end of the connection is refused: a prefix will do
    echoes: model.close ? messages.slice(0, observed.echoes.length) : messages,
    pongs: model.pongs.map(hex),
    close: model.close ? showClose(model.close.code) : 'close 1000',
    malformed: [],
    trailing: [],
    sessions: 0,
    tcp: 'ended',
  };
}

describe.each(platforms)(
  'raw frames fuzzed against RFC 6455 (%s)',
  (platform) => {
    let app: INestApplication;
    let port: number;
    const serverSockets = new Map<number, NetSocket>();

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [EchoController],
        },
        undefined,
        platform,
      ));
      const server = app.getHttpServer() as Server;
      server.on('connection', (socket: NetSocket) =>
        serverSockets.set(socket.remotePort!, socket),
      );
      port = (server.address() as AddressInfo).port;
    });

    afterAll(() => app.close());

    it(`answers hostile frame sequences as RFC 6455 requires (${RUNS} runs, seed ${SEED})`, async () => {
      const sessions = app.get(WebSocketSessions);
      await fc.assert(
        fc.asyncProperty(hostileClient, async ({ frames, chunking }) => {
          const model = modelServer(frames, { maxPayload: MAX_PAYLOAD });
          const connection = await ObservedConnection.open(port, serverSockets);
          try {
            for (const chunk of writes(frames.map(encodeFrame), chunking)) {
              if (!(await connection.write(chunk))) break;
            }
            if (!model.close) {
              // every echo and pong must come before the test closes, as the connection is open
              await connection.received(
                (sent) =>
                  sent.filter((f) => f.opcode === Text || f.opcode === Binary)
                    .length >= model.messages.length &&
                  sent.filter((f) => f.opcode === Pong).length >=
                    model.pongs.length,
              );
              await connection.write(
                encodeFrame({ opcode: Close, payload: closePayload(1000) }),
              );
            }
            const ended = await connection.whenClosed();
            // a server that does not close fails on what it did send, not on a timeout
            if (!ended) connection.destroy();
            await sessions.settled();
            const observed = observe(connection.frames(), {
              handler: delivered.get(connection.port) ?? [],
              sessions: sessions.size,
              ended,
            });
            expect({ ...observed, cause: model.close?.cause }).toEqual({
              ...expectedFrom(model, observed),
              cause: model.close?.cause,
            });
          } finally {
            delivered.delete(connection.port);
            connection.destroy();
          }
        }),
        {
          numRuns: RUNS,
          seed: SEED,
          verbose: true,
          ...(PATH && { path: PATH }),
        },
      );
    }, 120_000);

    it('still serves a fresh client afterwards, and no session is left', async () => {
      const client = await connectWs(app, '/echo');
      client.send('still here');
      expect((await client.next()).text).toBe('still here');
      expect(await client.close(1000)).toEqual({ code: 1000, reason: '' });
      const sessions = app.get(WebSocketSessions);
      await sessions.settled();
      expect(sessions.size).toBe(0);
    });
  },
);
