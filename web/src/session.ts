// The signed-in user's token. It lives in sessionStorage only (gone when the
// tab closes), arrives either pasted into the sign-in form or in the URL
// fragment of the standalone mode's start-up link (#token=...), and is
// removed from the URL at once so it is neither bookmarked, shared nor kept
// in the history. The fragment is never sent to a server.

const storageKey = "hgp.token";

export interface Session {
  token: string;
  // subject is the token's "sub" claim, decoded for display only: the
  // gateway verifies the token, the page never trusts the claim.
  subject: string;
}

// takeTokenFromURL moves a #token=... fragment into sessionStorage and
// strips it from the address bar. It returns true when a token was found.
export function takeTokenFromURL(): boolean {
  const hash = window.location.hash;
  if (!hash.startsWith("#")) {
    return false;
  }
  const params = new URLSearchParams(hash.slice(1));
  const token = params.get("token");
  if (token === null) {
    return false;
  }
  params.delete("token");
  const rest = params.toString();
  const url = window.location.pathname + window.location.search + (rest === "" ? "" : "#" + rest);
  window.history.replaceState(null, "", url);
  if (token.trim() === "") {
    return false;
  }
  store(token.trim());
  return true;
}

// load returns the current session, or undefined when signed out.
export function load(): Session | undefined {
  let token: string | null = null;
  try {
    token = window.sessionStorage.getItem(storageKey);
  } catch {
    return undefined;
  }
  if (token === null || token === "") {
    return undefined;
  }
  return { token, subject: subjectOf(token) };
}

// store keeps token for this tab.
export function store(token: string): void {
  try {
    window.sessionStorage.setItem(storageKey, token);
  } catch {
    // Storage disabled: the session lasts until the page is left.
  }
}

// clear signs out.
export function clear(): void {
  try {
    window.sessionStorage.removeItem(storageKey);
  } catch {
    // nothing stored
  }
}

// looksLikeJWT checks the shape of a pasted token (three base64url parts)
// so an obvious paste mistake is reported before any request.
export function looksLikeJWT(s: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(s);
}

// subjectOf decodes the "sub" claim of a JWT without verifying it, or ""
// when it cannot be read.
export function subjectOf(token: string): string {
  const parts = token.split(".");
  const payload = parts[1];
  if (parts.length !== 3 || payload === undefined) {
    return "";
  }
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "===".slice((b64.length + 3) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims === "object" && claims !== null && "sub" in claims) {
      const sub = (claims as { sub: unknown }).sub;
      return typeof sub === "string" ? sub : "";
    }
  } catch {
    // not a JWT we can read
  }
  return "";
}
