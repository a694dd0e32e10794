// What the browser drivers share: environment, pass/fail lines, and the page-side helpers every test page
// starts with (inlined into each page's script, since the pages are served as one HTML string).

// The environment variable `name`, or `fallback`; throws if neither is set.
export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`environment variable ${name} is not set`);
  return v;
};

// PASS/FAIL lines, counted; ./run counts the lines and prints the summary.
export const results = { passed: 0, failed: 0 };
export function check(name, ok, figures) {
  if (ok) results.passed += 1; else results.failed += 1;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${figures}`);
}

// A candidate from selectedPair() in one line.
export const fmtCand = (c) => (c ? `${c.candidateType}/${c.relayProtocol || c.protocol} ${c.address}:${c.port}` : 'none');

// Page script: sleep, a cached 320x240 15 fps camera and microphone, and the candidate pair in use.
export const PAGE_PRELUDE = String.raw`
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let cachedStream = null;
async function media() {
  if (!cachedStream) {
    cachedStream = await navigator.mediaDevices.getUserMedia({
      audio: true, video: { width: 320, height: 240, frameRate: 15 } });
  }
  return cachedStream;
}

// The pair a peer connection uses: transport.selectedCandidatePairId, else the nominated succeeded pair.
function selectedPair(report) {
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
  });
  if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) return null;
  const cand = (id) => {
    const c = report.get(id);
    return c ? { candidateType: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol,
      address: c.address, port: c.port, url: c.url } : null;
  };
  return { state: pair.state, nominated: pair.nominated, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
    currentRoundTripTime: pair.currentRoundTripTime, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
}
`;
