// k6 script: likes and reads through the gateway at a constant arrival rate.
//
//   TOKEN=$(go run ./services/gateway/cmd/devtoken -secret "$HGP_JWT_HS256_SECRET" -sub k6-user) \
//   k6 run -e BASE=http://127.0.0.1:8080 -e TOKEN=$TOKEN loadtest/k6/like.js
//
// Only point it at a gateway you run yourself.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const TOKEN = __ENV.TOKEN || '';
const ITEMS = parseInt(__ENV.ITEMS || '10000', 10);

export const options = {
  scenarios: {
    likes: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || '500', 10),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: 50,
      maxVUs: 200,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(99)<5'],
  },
};

const params = {
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
};

export default function () {
  const id = `k6-${Math.floor(Math.random() * ITEMS)}`;
  const item = { namespace: 'article', id };
  if (Math.random() < 0.3) {
    const res = http.post(`${BASE}/highgopress.counter.v1.CounterService/Like`, JSON.stringify({ item }), params);
    check(res, { 'like ok': (r) => r.status === 200 });
  } else {
    const res = http.post(`${BASE}/highgopress.counter.v1.CounterService/GetCounts`,
      JSON.stringify({ items: [item] }), { headers: { 'Content-Type': 'application/json' } });
    check(res, { 'counts ok': (r) => r.status === 200 });
  }
}
