// PostGraphile 5 asks for Node 22; the only Node 22 feature it needs on Node 20 is Promise.withResolvers.
// Loaded first (node --import ./node20.mjs server.mjs) so that it exists before PostGraphile's modules run.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
