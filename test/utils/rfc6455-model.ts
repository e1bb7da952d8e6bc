import { isUtf8 } from 'node:buffer';
import { FrameSpec, Opcode } from './frames';

/** A message the server must hand to its handler. */
export interface ModelMessage {
  opcode: typeof Opcode.Text | typeof Opcode.Binary;
  data: Buffer;
}

/** What a server must do with a sequence of client frames, by RFC 6455. */
export interface ModelOutcome {
  /** The messages it must deliver, in order. */
  messages: ModelMessage[];
  /** The payloads of the pongs it must answer with, in order (§5.5.3). */
  pongs: Buffer[];
  /**
   * The close frame it must end with: the code it carries (`undefined` for a payload without
   * a code), and which frame led to it and why. `undefined` when the connection stays open.
   */
  close?: { code: number | undefined; cause: string };
}

const DATA = new Set<number>([Opcode.Continuation, Opcode.Text, Opcode.Binary]);
const CONTROL = new Set<number>([Opcode.Close, Opcode.Ping, Opcode.Pong]);

/**
 * Whether a peer may send `code` in a close frame (§7.4): the codes §7.4.1 and the IANA registry
 * define, less 1004 (reserved) and 1005, 1006 and 1015 (never on the wire); 3000–4999 for
 * libraries and applications. The unassigned rest of 1000–2999 is reserved for the protocol.
 */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && ![1004, 1005, 1006].includes(code)) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * The reference model of a server's receiving side, with no extension negotiated: feeds
 * `frames` through RFC 6455's rules and says what must come back.
 *
 * Where the RFC leaves a choice, the model takes the one `ws` takes:
 * - a frame with several faults is failed for the first one its bytes show: header faults
 *   (1002) before the length (1009) before the payload (1007, or 1002 for a close code);
 * - text is checked as UTF-8 once its message is complete (§8.1 allows failing earlier);
 * - the echo of a close frame carries the peer's code (§5.5.1 "typically echos"), and the echo
 *   of a close frame without a payload has no payload either.
 * Nothing after the frame that ends the connection is read (§7.1.7, §5.5.1).
 */
export function modelServer(
  frames: FrameSpec[],
  { maxPayload }: { maxPayload: number },
): ModelOutcome {
  const outcome: ModelOutcome = { messages: [], pongs: [] };
  let message:
    | { opcode: ModelMessage['opcode']; parts: Buffer[]; size: number }
    | undefined;

  for (const [index, frame] of frames.entries()) {
    const { opcode, fin = true, rsv = 0, masked = true } = frame;
    const payload = Buffer.from(frame.payload ?? '');
    const end = (code: number | undefined, why: string): ModelOutcome => ({
      ...outcome,
      close: { code, cause: `frame ${index}: ${why}` },
    });

    // §5.2: RSV1-3 must be 0 unless an extension defines them; none is negotiated
    if (rsv !== 0) return end(1002, `RSV bits ${rsv.toString(2)}`);
    // §5.2: reserved opcodes fail the connection
    if (!DATA.has(opcode) && !CONTROL.has(opcode))
      return end(1002, `reserved opcode ${opcode}`);
    if (CONTROL.has(opcode)) {
      // §5.5: control frames are at most 125 bytes and never fragmented
      if (!fin) return end(1002, 'fragmented control frame');
      if (payload.length > 125)
        return end(1002, `control frame of ${payload.length} bytes`);
      // §5.5.1: a close payload starts with a two-byte code
      if (opcode === Opcode.Close && payload.length === 1)
        return end(1002, 'close payload of one byte');
    }
    // §5.4: a continuation continues a message; a new message waits for the last one's FIN
    if (opcode === Opcode.Continuation && !message)
      return end(1002, 'continuation with no message to continue');
    if (opcode !== Opcode.Continuation && DATA.has(opcode) && message)
      return end(1002, 'new message inside a fragmented one');
    // §5.1: a server fails a connection whose client sends an unmasked frame
    if (!masked) return end(1002, 'unmasked frame');

    if (DATA.has(opcode)) {
      message ??= {
        opcode: opcode as ModelMessage['opcode'],
        parts: [],
        size: 0,
      };
      message.size += payload.length;
      // §7.4.1: 1009, a message too big to process
      if (message.size > maxPayload)
        return end(1009, `message of ${message.size} bytes so far`);
      message.parts.push(payload);
      if (!fin) continue;
      const data = Buffer.concat(message.parts);
      // §8.1: text must be valid UTF-8, else 1007 (§7.4.1)
      if (message.opcode === Opcode.Text && !isUtf8(data))
        return end(1007, 'text message that is not UTF-8');
      outcome.messages.push({ opcode: message.opcode, data });
      message = undefined;
    } else if (opcode === Opcode.Ping) {
      outcome.pongs.push(payload);
    } else if (opcode === Opcode.Close) {
      if (payload.length === 0) return end(undefined, 'close without a code');
      const code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) return end(1002, `close code ${code}`);
      // §5.5.1: the reason is UTF-8; §8.1 makes anything else 1007
      if (!isUtf8(payload.subarray(2)))
        return end(1007, 'close reason that is not UTF-8');
      return end(code, `close ${code}`);
    }
    // §5.5.3: an unsolicited pong needs no answer
  }
  return outcome;
}
