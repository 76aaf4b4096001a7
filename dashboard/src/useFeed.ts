// The one hook that owns the WebSocket: connects to same-origin /ws?token=, feeds every message to
// the reducer, reconnects with backoff and jitter (the next snapshot resynchronises the state), and
// stops on close code 4401 (a wrong token): the page then asks for a token and shows no data.

import { useEffect, useReducer, useRef, useState } from "react";
import { reconnectDelay } from "./backoff";
import { EMPTY, feedReducer, type FeedState } from "./state";
import type { ServerMessage } from "./types";

export type Connection = "connecting" | "open" | "reconnecting" | "unauthorized";

export interface Feed {
  state: FeedState;
  connection: Connection;
  /** Date.now() when the last snapshot or beat arrived (null before the first). */
  lastUpdateMs: number | null;
  /** How many times the socket has connected (1 on the first connection). */
  connects: number;
}

export const UNAUTHORIZED = 4401;
const PING_MS = 25_000;

export function feedUrl(token: string, loc: Location = window.location): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws?token=${encodeURIComponent(token)}`;
}

/** True when the history API answers 401/403 to this token (false when it cannot be reached). */
async function tokenRefused(token: string): Promise<boolean> {
  try {
    const answer = await fetch("/api/equity?limit=1", {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5000),
    });
    return answer.status === 401 || answer.status === 403;
  } catch {
    return false;
  }
}

/** The feed for `session.token` (a new `session` object reconnects, even with the same token). */
export function useFeed(session: { token: string | null }): Feed {
  const [state, dispatch] = useReducer(feedReducer, EMPTY);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [lastUpdateMs, setLastUpdateMs] = useState<number | null>(null);
  const [connects, setConnects] = useState(0);
  const attempt = useRef(0);

  useEffect(() => {
    const token = session.token;
    attempt.current = 0;
    if (token === null) {
      dispatch({ kind: "clear" });
      setConnection("unauthorized");
      return;
    }
    let socket: WebSocket | null = null;
    let retry: number | undefined;
    let ping: number | undefined;
    let stopped = false;

    const connect = () => {
      setConnection(attempt.current === 0 ? "connecting" : "reconnecting");
      const ws = new WebSocket(feedUrl(token));
      socket = ws;
      ws.onopen = () => {
        setConnects((n) => n + 1);
        ping = window.setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), PING_MS);
      };
      ws.onmessage = (event: MessageEvent<string>) => {
        let message: ServerMessage;
        try {
          message = JSON.parse(event.data) as ServerMessage;
        } catch {
          return; // not JSON: nothing the feed sends; ignore rather than break the page
        }
        if (message.type === "snapshot") {
          attempt.current = 0;
          setConnection("open");
        }
        if (message.type === "snapshot" || message.type === "beat") setLastUpdateMs(Date.now());
        dispatch({ kind: "message", message });
      };
      let opened = false;
      ws.addEventListener("open", () => (opened = true));
      ws.onclose = async (event: CloseEvent) => {
        window.clearInterval(ping);
        if (stopped) return;
        // 4401: the token is wrong. A server that refuses the upgrade itself (HTTP 401) shows the
        // browser only 1006, so a socket that never opened asks the API whether the token is known.
        if (event.code === UNAUTHORIZED || (!opened && (await tokenRefused(token)))) {
          if (stopped) return;
          dispatch({ kind: "clear" });
          setLastUpdateMs(null);
          setConnection("unauthorized");
          return;
        }
        if (stopped) return;
        setConnection("reconnecting");
        retry = window.setTimeout(connect, reconnectDelay(attempt.current));
        attempt.current += 1;
      };
    };
    connect();
    return () => {
      stopped = true;
      window.clearTimeout(retry);
      window.clearInterval(ping);
      socket?.close(1000, "page closed");
    };
  }, [session]);

  return { state, connection, lastUpdateMs, connects };
}
