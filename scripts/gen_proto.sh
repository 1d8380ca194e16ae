#!/usr/bin/env bash
# Regenerate the Python stubs of the Salesforce Pub/Sub API from the proto in the repo.
# Needs grpcio-tools (the `test` extra). protoc writes `import pubsub_api_pb2`, which only
# works with the folder on sys.path, so the grpc module is rewritten to a package-relative
# import: the stubs then live inside connectors.salesforce.proto like any other module.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/connectors/salesforce/proto"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="python3"

"$python" -m grpc_tools.protoc \
  --proto_path="$proto_dir" \
  --python_out="$proto_dir" \
  --grpc_python_out="$proto_dir" \
  "$proto_dir/pubsub_api.proto"

sed -i 's/^import pubsub_api_pb2 as pubsub__api__pb2$/from . import pubsub_api_pb2 as pubsub__api__pb2/' \
  "$proto_dir/pubsub_api_pb2_grpc.py"
grep -q '^from \. import pubsub_api_pb2 as pubsub__api__pb2$' "$proto_dir/pubsub_api_pb2_grpc.py" || {
  echo "gen_proto.sh: could not make the grpc stub import relative" >&2
  exit 1
}
echo "generated: $proto_dir/pubsub_api_pb2.py $proto_dir/pubsub_api_pb2_grpc.py"
