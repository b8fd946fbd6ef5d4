// Drives the server with the official OpenAI JS SDK (base URL set) and prints what came back as JSON.
//   node openai_js.mjs BASE_URL MODEL_ID
import OpenAI from "openai";

const [base, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "not-used", maxRetries: 0 });
const results = {};
results.models = (await client.models.list()).data.map((m) => m.id);
const answer = await client.images.generate({ model, prompt: "a canal", size: "64x64", n: 2, response_format: "b64_json" });
results.images = answer.data.map((item) => Buffer.from(item.b64_json, "base64").subarray(1, 4).toString("latin1"));
try {
  await client.images.generate({ model: "gpt-image-1", prompt: "x" });
  results.unknown_model = null;
} catch (error) {
  results.unknown_model = { status: error.status, code: error.code, param: error.param, type: error.type };
}
console.log(JSON.stringify(results));
