// Clients of the gateway over gRPC-Web, and the plain-words description of
// what went wrong.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AnalyticsService } from "./gen/highgopress/analytics/v1/analytics_pb";
import { CounterService, FollowService } from "./gen/highgopress/counter/v1/counter_pb";

export interface Clients {
  counter: Client<typeof CounterService>;
  follow: Client<typeof FollowService>;
  analytics: Client<typeof AnalyticsService>;
}

// apiBase is where the gateway answers: the page's own origin, unless the
// page is served elsewhere and its <meta name="hgp-api-base"> names the
// gateway (that origin must then be listed in HGP_GATEWAY_CORS_ORIGINS).
export function apiBase(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="hgp-api-base"]');
  const configured = meta?.content.trim() ?? "";
  return configured === "" ? window.location.origin : configured.replace(/\/+$/, "");
}

// newClients returns clients whose calls carry the token returned by
// token() at call time (none when it returns undefined).
export function newClients(baseUrl: string, token: () => string | undefined): Clients {
  const auth: Interceptor = (next) => async (req) => {
    const t = token();
    if (t !== undefined) {
      req.header.set("Authorization", "Bearer " + t);
    }
    return next(req);
  };
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [auth] });
  return {
    counter: createClient(CounterService, transport),
    follow: createClient(FollowService, transport),
    analytics: createClient(AnalyticsService, transport),
  };
}

// Problem is an API failure in the words shown to the person.
export interface Problem {
  code: Code;
  // kind groups the codes the page reacts to.
  kind: "rate-limited" | "signed-out" | "unavailable" | "unsupported" | "invalid" | "other";
  message: string;
}

// describe turns any error of a call into a Problem. what names the action
// ("liking", "loading the ranking") for the message.
export function describe(err: unknown, what: string): Problem {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.ResourceExhausted: {
      const retry = ce.metadata.get("Retry-After");
      const wait = retry !== null && /^\d+$/.test(retry) ? ` Try again in ${retry} s.` : " Try again in a moment.";
      return { code: ce.code, kind: "rate-limited", message: `Too many requests: you are being rate limited while ${what}.${wait}` };
    }
    case Code.Unauthenticated:
      return { code: ce.code, kind: "signed-out", message: `You are signed out or your sign-in is no longer valid: sign in to continue ${what}.` };
    case Code.PermissionDenied:
      return { code: ce.code, kind: "other", message: `You are not allowed to do this (${what}).` };
    case Code.Unavailable:
    case Code.Aborted:
      return { code: ce.code, kind: "unavailable", message: `The server is unavailable (${what}). Retrying by itself.` };
    case Code.DeadlineExceeded:
      return { code: ce.code, kind: "unavailable", message: `The server took too long to answer (${what}). Retrying by itself.` };
    case Code.Unimplemented:
      return { code: ce.code, kind: "unsupported", message: `This server does not offer ${what} yet.` };
    case Code.InvalidArgument:
    case Code.OutOfRange:
    case Code.FailedPrecondition:
      return { code: ce.code, kind: "invalid", message: `The server refused ${what}: ${ce.rawMessage}` };
    case Code.Unknown:
    case Code.Internal:
      // A fetch that never reached the server (connection refused, reset,
      // blocked by CORS) surfaces as Unknown or Internal without a message
      // from the server.
      if (isNetworkFailure(ce)) {
        return { code: ce.code, kind: "unavailable", message: `The server is unavailable (${what}). Retrying by itself.` };
      }
      return { code: ce.code, kind: "other", message: `Something went wrong on the server while ${what}.` };
    case Code.Canceled:
      return { code: ce.code, kind: "other", message: `${what} was cancelled.` };
    default:
      return { code: ce.code, kind: "other", message: `Something went wrong while ${what} (${Code[ce.code]}).` };
  }
}

function isNetworkFailure(ce: ConnectError): boolean {
  const cause = ce.cause;
  if (cause instanceof TypeError) {
    return true;
  }
  const m = ce.rawMessage.toLowerCase();
  return m.includes("failed to fetch") || m.includes("network") || m.includes("load failed") || m.includes("missing trailer") || m.includes("premature");
}
