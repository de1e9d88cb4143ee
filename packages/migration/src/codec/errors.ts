/**
 * The one error type of the page codec. Thrown for input that cannot be decoded (malformed, truncated,
 * oversized, failing a checksum) and for arguments that break a function's contract (pages of the wrong
 * length, a limit that is not a byte count). The message names what is wrong and where; `cause` carries
 * the underlying error when there is one (for instance from the LZ4 decoder).
 */
export class CodecError extends Error {
  override readonly name = "CodecError";
}
