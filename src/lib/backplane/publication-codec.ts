import type { Publication } from './backplane';

/** What travels with a publication's payload: who sent it, and who it is for. */
export interface PublicationHeader {
  /** The instance that published it. */
  o: string;
  g?: string[];
  u?: string;
  x?: string[];
  /** Binary. */
  b?: 1;
  /** Its instance handed it to its own sessions already (it was held while the broker was away). */
  d?: 1;
}

/** A publication as it goes through the broker, before its place in the stream: `<header JSON>\n<payload>`. */
export function encodeBody(
  publication: Publication,
  origin: string,
  delivered: boolean,
): Buffer {
  const header: PublicationHeader = { o: origin };
  if (publication.groups?.length) header.g = publication.groups;
  if (publication.user !== undefined) header.u = publication.user;
  if (publication.except?.length) header.x = publication.except;
  if (publication.binary) header.b = 1;
  if (delivered) header.d = 1;
  const { payload } = publication;
  return Buffer.concat([
    Buffer.from(`${JSON.stringify(header)}\n`),
    typeof payload === 'string' ? Buffer.from(payload) : payload,
  ]);
}

const SPACE = 0x20;
const NEWLINE = 0x0a;

/**
 * Reads `<offset> <epoch> <header JSON>\n<payload>`; `undefined` when it is not one (another
 * program on the channel). `delivered` is set on what `self` published and handed on already.
 */
export function decodeMessage(
  message: Buffer,
  self: string,
): Publication | undefined {
  const first = message.indexOf(SPACE);
  const second = message.indexOf(SPACE, first + 1);
  const newline = message.indexOf(NEWLINE, second + 1);
  if (first < 1 || second < 0 || newline < 0) return undefined;
  let header: PublicationHeader;
  try {
    header = JSON.parse(
      message.toString('utf8', second + 1, newline),
    ) as PublicationHeader;
  } catch {
    return undefined;
  }
  if (
    typeof header !== 'object' ||
    header === null ||
    typeof header.o !== 'string'
  ) {
    return undefined;
  }
  const offset = Number(message.toString('latin1', 0, first));
  const epoch = message.toString('latin1', first + 1, second);
  const bytes = message.subarray(newline + 1);
  const publication: Publication = {
    payload: header.b ? Buffer.from(bytes) : bytes.toString('utf8'),
    binary: header.b === 1,
  };
  if (Array.isArray(header.g)) publication.groups = header.g;
  if (typeof header.u === 'string') publication.user = header.u;
  if (Array.isArray(header.x)) publication.except = header.x;
  if (offset > 0 && epoch !== '-') publication.position = { offset, epoch };
  if (header.d && header.o === self) publication.delivered = true;
  return publication;
}
