#!/usr/bin/env bash
# The benches with real Kafka on a machine lent by the device tool (no Java, no network there).
# bench/device_kit.py packs .device/ (model, corpus) and .kit/ (Java + broker jars, wheels); each
# is carried by its own call, one right after the other, while the machine stays warm:
#
#   call 1, carry [".device"]:  bash bench/device_run.sh stash
#   call 2, carry [".kit"]:     bash bench/device_run.sh ingest query   # either or both
#
# Logs go to $OUT (the device tool brings them back); Kafka's own log too.
set -euo pipefail
KIT=${STREAMRAG_KIT_DIR:-/tmp/streamrag-kit}
OUT=${OUT:-$KIT/out}
mkdir -p "$KIT" "$OUT"

if [[ "${1:-}" == stash ]]; then  # keep the model and corpus outside the tree the next call replaces
    rm -rf "$KIT/device" && cp -r .device "$KIT/device" && du -sh "$KIT/device"
    exit 0
fi
[[ -d "$KIT/device/model" ]] || { echo "no $KIT/device: run 'bench/device_run.sh stash' first (carry .device)"; exit 2; }

if [[ ! -x "$KIT/kafka-kit/jre/bin/java" ]]; then
    tar -xJf .kit/kafka.tar.xz -C "$KIT"
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$KIT/site" .kit/wheels/*.whl
export PYTHONPATH="$KIT/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export STREAMRAG_JAVA="$KIT/kafka-kit/jre/bin/java" STREAMRAG_CACHE_DIR="$KIT/kafka-kit/cache"
export STREAMRAG_DATA_DIR="$KIT/data"
trap 'cp "$KIT"/data/logs/kafka.log "$OUT"/ 2>/dev/null || true' EXIT

python3 -m streamrag stack up --kafka-only
nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

for what in "${@:-ingest}"; do
    case "$what" in
        ingest)  # the same benchmark as on the CPU, the embedder on the GPU
            python3 bench/ingest.py --device cuda --model-path "$KIT/device/model" \
                --corpus-dir "$KIT/device/corpus" --docs "${DOCS:-300}" --repeat "${REPEAT:-3}" \
                --batch-size "${BATCH:-64}" 2>&1 | tee "$OUT/ingest.log"
            ;;
        query)  # the API on CPU cores that the clients do not share; the model carried in fp16,
                # widened to fp32 here (the API picks bf16 or fp32 itself, as on any CPU)
            if [[ ! -d "$KIT/model32" ]]; then
                python3 -c "import sys, torch; from sentence_transformers import SentenceTransformer as S; \
S(sys.argv[1], device='cpu').to(torch.float32).save(sys.argv[2])" "$KIT/device/model" "$KIT/model32"
            fi
            for clients in ${CLIENTS:-1 2}; do
                python3 bench/query.py --model-path "$KIT/model32" --corpus-dir "$KIT/device/corpus" \
                    --docs "${QDOCS:-150}" --clients "$clients" --rounds "${ROUNDS:-3}" --answers 0 2>&1 | tee -a "$OUT/query.log"
            done
            ;;
        *) echo "unknown bench '$what' (ingest, query)"; exit 2 ;;
    esac
done
