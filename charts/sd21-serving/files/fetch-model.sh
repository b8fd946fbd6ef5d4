#!/bin/sh
# Fetches the compiled model tarball from S3, verifies its sha256 and unpacks it into MODEL_DIR.
# With a node-local cache, a model already unpacked with the same digest is reused.
# Env: MODEL_S3_URI (s3://bucket/key.tar.gz), MODEL_SHA256 (empty: read <uri>.sha256), MODEL_DIR.
set -eu

fail() {
  echo "fetch-model: $*" >&2
  exit 1
}

[ -n "${MODEL_S3_URI:-}" ] || fail "MODEL_S3_URI is empty; set model.s3Uri"
case "$MODEL_S3_URI" in s3://?*/?*) ;; *) fail "MODEL_S3_URI must look like s3://bucket/key, got '$MODEL_S3_URI'" ;; esac
[ -n "${MODEL_DIR:-}" ] || fail "MODEL_DIR is empty"
work="${WORK_DIR:-$MODEL_DIR/.download}"
mkdir -p "$MODEL_DIR" "$work"

expected="${MODEL_SHA256:-}"
if [ -z "$expected" ]; then
  if ! aws s3 cp --only-show-errors "$MODEL_S3_URI.sha256" "$work/model.sha256"; then
    fail "cannot read $MODEL_S3_URI.sha256 (missing object or no access); upload it beside the tarball or set model.sha256"
  fi
  expected=$(cut -d' ' -f1 "$work/model.sha256")
fi
echo "$expected" | grep -Eq '^[0-9a-f]{64}$' || fail "expected sha256 '$expected' is not 64 hex digits"

if [ -f "$MODEL_DIR/.complete" ] && [ "$(cat "$MODEL_DIR/.complete")" = "$expected" ]; then
  echo "fetch-model: $MODEL_DIR already holds $expected; nothing to do"
  exit 0
fi

echo "fetch-model: downloading $MODEL_S3_URI"
if ! aws s3 cp --only-show-errors "$MODEL_S3_URI" "$work/model.tar.gz"; then
  fail "cannot download $MODEL_S3_URI (missing object or no access for this pod's IAM role)"
fi
actual=$(sha256sum "$work/model.tar.gz" | cut -d' ' -f1)
[ "$actual" = "$expected" ] || fail "sha256 of $MODEL_S3_URI is $actual, expected $expected"

rm -f "$MODEL_DIR/.complete"
tar -xzf "$work/model.tar.gz" -C "$MODEL_DIR" --no-same-owner
[ -f "$MODEL_DIR/model_index.json" ] || fail "$MODEL_S3_URI does not contain model_index.json at its top level"
rm -rf "$work"
echo "$expected" > "$MODEL_DIR/.complete"
echo "fetch-model: unpacked $MODEL_S3_URI ($expected) into $MODEL_DIR"
