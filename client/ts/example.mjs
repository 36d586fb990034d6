// A Node program using corsd's generated JavaScript client: it stores a
// bucket's CORS configuration and evaluates an allowed and a refused
// preflight, once over the Connect protocol (JSON, HTTP/1.1) and once over
// gRPC (HTTP/2 without TLS), against corsd's HTTP listener.
//
//   npm ci && node example.mjs http://127.0.0.1:8080
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ConfigService } from "./gen/corsd/v1/config_pb.js";
import { DecisionService, Mismatch, Verdict } from "./gen/corsd/v1/decision_pb.js";

const baseUrl = process.argv[2] ?? "http://127.0.0.1:8080";
const bucket = "ts-example";

const transports = {
  "connect-json": createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  "grpc-h2c": createGrpcTransport({ baseUrl }),
};

const config = createClient(ConfigService, transports["connect-json"]);
const { etag } = await config.putBucketCors({
  bucket,
  document: {
    case: "json",
    value: JSON.stringify({
      CORSRules: [{ ID: "web-app", AllowedOrigins: ["https://app.example.com"], AllowedMethods: ["GET", "PUT"], AllowedHeaders: ["content-type"] }],
    }),
  },
});
console.log(`put ${bucket} etag=${etag}`);

for (const [name, transport] of Object.entries(transports)) {
  const decisions = createClient(DecisionService, transport);
  const allowed = await decisions.evaluate({
    bucket, key: "cat.jpg", method: "OPTIONS",
    origin: "https://app.example.com", accessControlRequestMethod: "PUT", accessControlRequestHeaders: "Content-Type",
  });
  const allowOrigin = allowed.headers.find((h) => h.name === "Access-Control-Allow-Origin")?.value;
  console.log(`${name} allowed status=${allowed.status} verdict=${Verdict[allowed.verdict]} rule=${allowed.matchedRuleId} allow-origin=${allowOrigin}`);

  const refused = await decisions.evaluate({
    bucket, key: "cat.jpg", method: "OPTIONS",
    origin: "https://evil.example.com", accessControlRequestMethod: "PUT", explain: true,
  });
  console.log(`${name} refused status=${refused.status} code=${refused.error?.code} why=${Mismatch[refused.trace[0].mismatch]}`);
}
