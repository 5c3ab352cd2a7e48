/**
 * Hides the credentials of every URI in `text` (`mongodb://user:secret@host/db` →
 * `mongodb://***@host/db`), leaving hosts, paths and options readable. Use it wherever a
 * connection string is printed or put in an error message: logs are shipped and kept, secrets must
 * not be. Text without credentials comes back unchanged.
 */
export function redactUri(text: string): string {
  // The user-info part runs from `scheme://` to the last `@` before the path, query or fragment,
  // so a password with a stray unescaped `@` is hidden whole.
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, '$1***@');
}
