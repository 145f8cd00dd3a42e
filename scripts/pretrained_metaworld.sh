#!/usr/bin/env bash
# Build the pretrained small MetaWorld reward models that the RL benchmark uses (pretrained/metaworld-small):
# expert videos of the paper's 7 tasks, the small codec, VQ-Diffusion (Diffusion Reward) and VideoGPT (VIPER),
# the fitted reward directories (and AMP and RND fitted offline, for the reward-quality table), and the expert
# train episodes that AMP's discriminator learns from in RL.
# About 40 minutes on 2 CPU cores (data 5, codec 6-10, the two video models side by side 20-25, rewards 2).
# Usage: bash scripts/pretrained_metaworld.sh [OUT_DIR] [WORK_DIR]
set -euo pipefail
OUT=${1:-pretrained/metaworld-small}
WORK=${2:-runs/pretrained-metaworld-small}
DR=${DR:-.venv/bin/diffusion-reward}
PY=${PY:-.venv/bin/python}
DATA="$WORK/data"
stage() { echo "[pretrained] $(date -u +%H:%M:%S) $*"; }

stage "expert episodes: 20 train + 20 held-out per task; 5 random train episodes per task (AMP's negatives)"
$DR collect --suite metaworld-paper --episodes 20 --test-episodes 20 --out "$DATA" --no-progress
$DR collect --suite metaworld-paper --policy random --episodes 5 --test-episodes 0 --out "$DATA" --no-progress
stage "codec"
$DR train-codec --data "$DATA" --preset small --foreground-weight 3 --run-dir "$WORK/codec" --no-progress
stage "VQ-Diffusion and VideoGPT, side by side on one thread each"
$DR train-video --model vqdiffusion --codec "$WORK/codec/model" --data "$DATA" --preset small --threads 1 \
    --run-dir "$WORK/vqd" --no-progress &
VQD=$!
$DR train-video --model videogpt --codec "$WORK/codec/model" --data "$DATA" --preset small --threads 1 \
    --run-dir "$WORK/videogpt" --no-progress &
GPT=$!
wait $VQD
wait $GPT
stage "reward models"
# float32 pinned (--no-bf16), not 'auto': every benchmark cell must compute the same rewards on every machine
$DR fit-reward --kind diffusion --no-bf16 --video "$WORK/vqd/model" --data "$DATA" --stats-episodes 5 \
    --out "$OUT/reward-entropy"
$DR fit-reward --kind viper --no-bf16 --video "$WORK/videogpt/model" --data "$DATA" --stats-episodes 5 \
    --out "$OUT/reward-viper"
# the baselines fitted offline, for the reward-quality table (in RL, AMP and RND train online from scratch)
$DR fit-reward --kind amp --data "$DATA" --seed 0 --out "$OUT/reward-amp"
$DR fit-reward --kind rnd --data "$DATA" --seed 0 --out "$OUT/reward-rnd"
stage "expert train episodes for AMP"
$PY scripts/expert_train_episodes.py "$DATA" "$OUT/expert-data"
stage "done: $OUT"
du -sh "$OUT"/*
