import { randomBytes } from 'node:crypto';

/** A WebSocket frame as RFC 6455 §5.2 lays it out, for writing frames a real client would not send. */
export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  /** @default true */
  fin?: boolean;
  /** RSV1..RSV3 as the three bits 0b100, 0b010, 0b001. @default 0 */
  rsv?: number;
  /** Clients must mask; `false` writes an unmasked frame. @default true */
  masked?: boolean;
}

export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** Encodes one frame. */
export function encodeFrame({
  opcode,
  payload = '',
  fin = true,
  rsv = 0,
  masked = true,
}: FrameSpec): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const length = data.length;
  const extended = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const head = Buffer.alloc(2 + extended + (masked ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  head[1] =
    (masked ? 0x80 : 0) |
    (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) head.writeUInt16BE(length, 2);
  if (extended === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!masked) return Buffer.concat([head, data]);
  const mask = randomBytes(4);
  mask.copy(head, 2 + extended);
  return Buffer.concat([head, data.map((byte, i) => byte ^ mask[i % 4])]);
}

/** The payload of a close frame: a code and an optional reason. */
export function closePayload(
  code: number,
  reason: Buffer | string = '',
): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(code);
  return Buffer.concat([
    head,
    Buffer.isBuffer(reason) ? reason : Buffer.from(reason),
  ]);
}

/** A frame as `decodeFrame` reads it. */
export interface DecodedFrame {
  opcode: number;
  /** Unmasked, when the frame was masked. */
  payload: Buffer;
  fin: boolean;
  /** RSV1..RSV3 as in `FrameSpec`. */
  rsv: number;
  masked: boolean;
  /** How many bytes of the input the frame took. */
  size: number;
}

/** The first frame in `bytes` (server frames are unmasked), or undefined while incomplete. */
export function decodeFrame(bytes: Buffer): DecodedFrame | undefined {
  if (bytes.length < 2) return undefined;
  let length = bytes[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.length < 4) return undefined;
    [length, offset] = [bytes.readUInt16BE(2), 4];
  } else if (length === 127) {
    if (bytes.length < 10) return undefined;
    [length, offset] = [Number(bytes.readBigUInt64BE(2)), 10];
  }
  const masked = (bytes[1] & 0x80) !== 0;
  const mask = masked ? bytes.subarray(offset, offset + 4) : undefined;
  if (mask) offset += 4;
  if (bytes.length < offset + length) return undefined;
  const payload = bytes.subarray(offset, offset + length);
  return {
    opcode: bytes[0] & 0x0f,
    payload: mask
      ? Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]))
      : payload,
    fin: (bytes[0] & 0x80) !== 0,
    rsv: (bytes[0] >> 4) & 0b111,
    masked,
    size: offset + length,
  };
}
