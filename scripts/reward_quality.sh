#!/usr/bin/env bash
# Rebuild the README's reward-quality table from nothing: the 7-task MetaWorld data, the small
# codec, VQ-Diffusion and VideoGPT, the reward models (the entropy reward also with its sampling
# noise off), and one evaluate-reward run over them.
# About 90 minutes on 2 quiet CPU cores: data ~8 min, codec ~6, VQ-Diffusion ~15, VideoGPT ~20,
# reward models ~3, and the evaluation of 490 held-out episodes with every row ~40 (41 min measured).
# Usage: bash scripts/reward_quality.sh [DATA_DIR] [RUNS_DIR]
# CAMERA=corner2-near renders every episode from that camera (default: the tasks' own, corner2).
set -euo pipefail
DATA=${1:-data/mw}
RUNS=${2:-runs}
DR=${DR:-.venv/bin/diffusion-reward}
CAM=()
if [ -n "${CAMERA:-}" ]; then CAM=(--camera "$CAMERA"); fi
stage() { echo "[reward_quality] $(date -u +%H:%M:%S) $*"; }

stage "expert episodes (20 train + 20 held-out per task)"
$DR collect --suite metaworld-paper --episodes 20 --test-episodes 20 "${CAM[@]}" --out "$DATA" --no-progress
stage "held-out random (20 per task) and noisy-expert (10 per task and noise level) episodes"
$DR collect --suite metaworld-paper --policy random --episodes 0 --test-episodes 20 "${CAM[@]}" --out "$DATA" --no-progress
$DR collect --suite metaworld-paper --policy noisy:0.1 noisy:0.3 noisy:1.0 --episodes 0 \
    --test-episodes 10 "${CAM[@]}" --out "$DATA" --no-progress
stage "train-split random episodes (AMP's negatives)"
$DR collect --suite metaworld-paper --policy random --episodes 5 "${CAM[@]}" --out "$DATA" --no-progress

stage "codec"
$DR train-codec --data "$DATA" --preset small --foreground-weight 3 --run-dir "$RUNS/codec" --no-progress
stage "VQ-Diffusion"
$DR train-video --model vqdiffusion --codec "$RUNS/codec/model" --data "$DATA" --preset small \
    --run-dir "$RUNS/vqd" --no-progress
stage "VideoGPT (VIPER)"
$DR train-video --model videogpt --codec "$RUNS/codec/model" --data "$DATA" --preset small \
    --run-dir "$RUNS/videogpt" --no-progress

stage "reward models"
$DR fit-reward --kind diffusion --video "$RUNS/vqd/model" --data "$DATA" --stats-episodes 5 --out "$RUNS/reward-entropy"
$DR fit-reward --kind diffusion --no-gumbel --video "$RUNS/vqd/model" --data "$DATA" --stats-episodes 5 \
    --out "$RUNS/reward-entropy-noise-off"
$DR fit-reward --kind diffusion --variant likelihood --video "$RUNS/vqd/model" --data "$DATA" \
    --stats-episodes 5 --out "$RUNS/reward-likelihood"
$DR fit-reward --kind viper --video "$RUNS/videogpt/model" --data "$DATA" --stats-episodes 5 --out "$RUNS/reward-viper"
$DR fit-reward --kind amp --data "$DATA" --out "$RUNS/reward-amp"
$DR fit-reward --kind rnd --data "$DATA" --out "$RUNS/reward-rnd"

stage "evaluate-reward (the motion reference is always added)"
$DR evaluate-reward --model entropy="$RUNS/reward-entropy" entropy-noise-off="$RUNS/reward-entropy-noise-off" \
    likelihood="$RUNS/reward-likelihood" viper="$RUNS/reward-viper" amp="$RUNS/reward-amp" rnd="$RUNS/reward-rnd" \
    --data "$DATA" --out "$RUNS/evaluate-reward"
stage "done: $RUNS/evaluate-reward/reward_quality.md"
