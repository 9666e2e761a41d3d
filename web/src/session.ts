// The credential lives in sessionStorage: it is gone when the browser tab's
// session ends, and never reaches localStorage, a cookie or a URL.

const TOKEN_KEY = "sb.token";

export function token(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(value: string): void {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(LAST_WRITE_KEY);
}

// The caller's last write ({id, version}), so the next search or list waits
// until the read side holds it (read your writes, docs/query-api.md).
const LAST_WRITE_KEY = "sb.lastWrite";

export interface Written {
  id: string;
  version: number;
}

export function lastWrite(): Written | null {
  const raw = sessionStorage.getItem(LAST_WRITE_KEY);
  if (!raw) return null;
  try {
    const parsed = JSON.parse(raw) as Written;
    return typeof parsed.id === "string" && typeof parsed.version === "number" ? parsed : null;
  } catch {
    return null;
  }
}

export function rememberWrite(written: Written): void {
  sessionStorage.setItem(LAST_WRITE_KEY, JSON.stringify({ id: written.id, version: written.version }));
}

export function forgetWrite(): void {
  sessionStorage.removeItem(LAST_WRITE_KEY);
}
