// The read token: taken from `?token=` once, kept in sessionStorage for this tab, and removed from
// the address bar (history.replaceState) so it is not left in the history, bookmarks or a screenshot.

const KEY = "xylen.token";

export function takeToken(win: Window = window): string | null {
  const url = new URL(win.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) {
    url.searchParams.delete("token");
    win.history.replaceState(win.history.state, "", url.pathname + url.search + url.hash);
    if (fromUrl !== "") {
      win.sessionStorage.setItem(KEY, fromUrl);
      return fromUrl;
    }
  }
  return win.sessionStorage.getItem(KEY);
}

export function storeToken(token: string, win: Window = window): void {
  win.sessionStorage.setItem(KEY, token);
}

export function forgetToken(win: Window = window): void {
  win.sessionStorage.removeItem(KEY);
}
