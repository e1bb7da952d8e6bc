/**
 * `bytes`, or a copy of them when they are a view of less than half of the memory they keep
 * alive: a message or a fragment cut from a socket read of 64 KiB keeps all of it, while it waits.
 * The copy has a backing store of its own, not a slice of Node's shared pool, which a small
 * slice would also keep whole.
 */
export function detachedBytes(bytes: Buffer): Buffer {
  if (bytes.byteLength * 2 >= bytes.buffer.byteLength) return bytes;
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  bytes.copy(copy);
  return copy;
}
