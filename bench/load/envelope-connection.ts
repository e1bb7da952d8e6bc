import {
  ACK_DELAY,
  ACK_EVERY,
  type Welcome,
} from '../../src/lib/protocol/envelope';
import { frame, LeanConnection } from './lean-client';

// acks as nestjs-ws-endpoints/client does: after ACK_EVERY messages, or ACK_DELAY ms after the first
const M = 0x6d;
const W = 0x77;
const A = 0x61;
const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);
/** A close frame with 1000: the session ends, rather than waiting for a resume. */
const CLOSE = frame(Buffer.from([0x03, 0xe8]), 0x8);

/** The ack frames of every connection of the process: the client's (sent) and the server's. */
export const ackFrames = { sent: 0, received: 0 };

export interface EnvelopeOptions {
  /** Whether the server's messages are acked, as the real client does. @default true */
  acks?: boolean;
  /** Resumes the session of this connection, which dropped. */
  resume?: EnvelopeConnection;
  /** Set before connecting: messages can come in the same read as the welcome. */
  onMessage?: (payload: Buffer) => void;
}

/**
 * A reliable-mode client over LeanConnection, lean enough for the load generator: it numbers
 * its messages (`m <seq>\n<payload>`, one buffer each), reads the server's, acks them as
 * nestjs-ws-endpoints/client does, and can drop its connection (no close frame) and resume the
 * session on a new one. It keeps nothing to send again: the load it drives is closed-loop.
 */
export class EnvelopeConnection {
  /** Each of the server's messages, in order, once. */
  onMessage: (payload: Buffer) => void = () => undefined;
  welcome!: Welcome;
  /** When the welcome arrived (performance.now()). */
  welcomedAt = 0;
  /** The last of the server's messages received. */
  received = 0;
  private sent = 0;
  private unacked = 0;
  private ackTimer?: NodeJS.Timeout;
  private lean!: LeanConnection;

  private constructor(private readonly acks: boolean) {}

  /** Connects (or resumes `options.resume`'s session) and resolves after the welcome. */
  static async open(
    port: number,
    path: string,
    { acks = true, resume, onMessage }: EnvelopeOptions = {},
  ): Promise<EnvelopeConnection> {
    const connection = new EnvelopeConnection(acks);
    if (onMessage) connection.onMessage = onMessage;
    if (resume) {
      connection.received = resume.received;
      connection.sent = resume.sent;
    }
    const target = resume
      ? `${path}?ws_resume=${resume.welcome.token}&ws_ack=${resume.received}`
      : path;
    connection.lean = await LeanConnection.open(port, target);
    await new Promise<void>((resolve, reject) => {
      connection.lean.onText = (payload) => {
        if (payload[0] !== W) {
          reject(new Error(`Expected a welcome, got ${payload.toString()}`));
          return;
        }
        connection.welcomedAt = performance.now();
        connection.welcome = JSON.parse(payload.toString('utf8', 2));
        if (resume && !connection.welcome.resumed) {
          reject(new Error('The session was not resumed'));
          return;
        }
        connection.lean.onText = (data) => connection.read(data);
        resolve();
      };
    });
    return connection;
  }

  /** Sends `payload` as the next message. */
  send(payload: Buffer): void {
    this.lean.send(envelopeFrame(`m ${++this.sent}\n`, payload));
  }

  /** Closes with 1000: the session ends. */
  close(): void {
    clearTimeout(this.ackTimer);
    this.lean.socket.end(CLOSE);
  }

  /** Drops the TCP connection, without a close frame: the session waits for a resume. */
  drop(): void {
    clearTimeout(this.ackTimer);
    this.lean.close();
  }

  private read(data: Buffer): void {
    if (data[0] !== M) {
      // acks of our messages, pongs: nothing to do in a closed loop
      if (data[0] === A) ackFrames.received++;
      return;
    }
    let seq = 0;
    let index = 2;
    for (; data[index] !== NEWLINE; index++) seq = seq * 10 + data[index] - 48;
    if (seq !== this.received + 1) {
      console.error(`envelope: message ${seq} after ${this.received}`);
      this.drop();
      return;
    }
    this.received = seq;
    if (this.acks) this.scheduleAck();
    this.onMessage(data.subarray(index + 1));
  }

  private scheduleAck(): void {
    if (++this.unacked >= ACK_EVERY) return this.sendAck();
    this.ackTimer ??= setTimeout(this.sendAck, ACK_DELAY);
  }

  private readonly sendAck = (): void => {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.unacked = 0;
    if (this.lean.socket.destroyed) return;
    this.lean.send(envelopeFrame(`a ${this.received}\n`, EMPTY));
    ackFrames.sent++;
  };
}

/** A masked text frame (zero mask key) of an envelope header line and `body`, in one buffer. */
function envelopeFrame(line: string, body: Buffer): Buffer {
  const length = line.length + body.length;
  const extended = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const offset = 2 + extended + 4;
  const out = Buffer.allocUnsafe(offset + length);
  out[0] = 0x81;
  out[1] = 0x80 | (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) out.writeUInt16BE(length, 2);
  else if (extended === 8) out.writeBigUInt64BE(BigInt(length), 2);
  out.writeUInt32BE(0, offset - 4);
  out.write(line, offset, 'latin1');
  body.copy(out, offset + line.length);
  return out;
}
