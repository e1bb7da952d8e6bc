import {
  type FrameKind,
  header,
  MAX_SERVER_HEADER,
} from '../protocol/envelope';
import { ClientMessage } from './client-message';

const encoder = new TextEncoder();

/** A value as a payload: a string as text, bytes as binary, anything else as JSON text. */
export function encode(data: unknown): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const json = JSON.stringify(data) as string | undefined;
  if (json === undefined)
    throw new TypeError('Cannot send a value with no JSON form.');
  return json;
}

/** The bytes a payload takes on the wire: a string's UTF-8 length, counted without encoding it. */
export function byteLength(payload: string | Uint8Array): number {
  if (typeof payload !== 'string') return payload.length;
  let bytes = payload.length;
  for (let i = 0; i < payload.length; i++) {
    const code = payload.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) {
      bytes += 1;
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < payload.length) {
      bytes += 2; // a surrogate pair: 4 bytes for its 2 units
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/** A frame: the header line, then the payload. */
export function frameOf(
  kind: FrameKind,
  seq: number,
  payload: string | Uint8Array,
  id?: string,
): string | Uint8Array {
  const line = header(kind, seq, id);
  if (typeof payload === 'string') return line + payload;
  const frame = new Uint8Array(line.length + payload.length);
  frame.set(encoder.encode(line));
  frame.set(payload, line.length);
  return frame;
}

/** A frame's header line and payload; no line when there is no `\n` where a header ends. */
export function split(data: unknown): {
  line?: string;
  payload: string | Uint8Array;
} {
  if (typeof data === 'string') {
    const newline = data.indexOf('\n');
    if (newline < 0 || newline >= MAX_SERVER_HEADER) return { payload: data };
    return { line: data.slice(0, newline), payload: data.slice(newline + 1) };
  }
  const bytes = new Uint8Array(data as ArrayBuffer);
  const newline = bytes.subarray(0, MAX_SERVER_HEADER).indexOf(10);
  if (newline < 0) return { payload: bytes };
  return {
    line: String.fromCharCode(...bytes.subarray(0, newline)),
    payload: bytes.slice(newline + 1),
  };
}

/** A payload parsed as JSON, or `undefined` when it is not JSON. */
export function parseJson<T>(payload: string | Uint8Array): T | undefined {
  try {
    return JSON.parse(new ClientMessage(payload).text) as T;
  } catch {
    return undefined;
  }
}
