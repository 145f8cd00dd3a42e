#!/usr/bin/env bash
# Build the Adroit reward models and their reward-quality record from nothing: expert videos made
# here by the planner (no downloads), held-out episodes of known quality, one codec, one VQ-Diffusion
# and one VideoGPT on door, hammer and pen pooled (small presets), the reward models, and one
# evaluate-reward run over every reward, written to benchmarks/results/reward_quality/adroit-small.json.
# Re-running resumes: collect skips the episodes it has, the trainers resume their run directories.
#
# Cost on one CPU core: the planner takes 30-40 s per expert or noisy episode, and hammer's and pen's
# experts fail 30-40% of seeds (retried with new ones), so the 150 + 60 expert and 90 noisy episodes
# are ~5 hours of one core (2.5 on two: collect uses a worker per core); codec, video models and
# rewards ~1 hour; the evaluation of 240 episodes ~20 minutes.
# Usage: bash scripts/adroit_rewards.sh [DATA_DIR] [RUNS_DIR]
# Beside other work: WORKERS=1 nice -n 10 bash scripts/adroit_rewards.sh
# Smaller runs (to check the wiring): EPISODES=2 TEST_EPISODES=1 NOISY_EPISODES=1 PRESET=tiny \
#     RESULTS=runs/adroit-check.json bash scripts/adroit_rewards.sh data/adroit-check runs/adroit-check
set -euo pipefail
DATA=${1:-data/adroit}
RUNS=${2:-runs/adroit}
DR=${DR:-.venv/bin/diffusion-reward}
EPISODES=${EPISODES:-50}            # train-split expert episodes per task (the paper's 150 in all)
TEST_EPISODES=${TEST_EPISODES:-20}  # held-out expert and random episodes per task
NOISY_EPISODES=${NOISY_EPISODES:-10}  # held-out episodes per task and noise level
PRESET=${PRESET:-small}
RESULTS=${RESULTS:-benchmarks/results/reward_quality/adroit-small.json}
WORKERS=${WORKERS:-}              # collect's worker processes (empty: one per core)
stage() { echo "[adroit_rewards] $(date -u +%H:%M:%S) $*"; }

stage "expert episodes ($EPISODES train + $TEST_EPISODES held-out per task; the planner, 30-40 s each)"
$DR collect --suite adroit --episodes "$EPISODES" --test-episodes "$TEST_EPISODES" --out "$DATA" ${WORKERS:+--workers "$WORKERS"} --no-progress
stage "held-out random ($TEST_EPISODES per task) and noisy-expert ($NOISY_EPISODES per task and noise level) episodes"
$DR collect --suite adroit --policy random --episodes 0 --test-episodes "$TEST_EPISODES" --out "$DATA" ${WORKERS:+--workers "$WORKERS"} --no-progress
$DR collect --suite adroit --policy noisy:0.1 noisy:0.3 noisy:1.0 --episodes 0 \
    --test-episodes "$NOISY_EPISODES" --out "$DATA" ${WORKERS:+--workers "$WORKERS"} --no-progress
stage "train-split random episodes (AMP's negatives)"
$DR collect --suite adroit --policy random --episodes 5 --out "$DATA" ${WORKERS:+--workers "$WORKERS"} --no-progress

stage "codec"
$DR train-codec --data "$DATA" --preset "$PRESET" --run-dir "$RUNS/codec" --no-progress
stage "VQ-Diffusion"
$DR train-video --model vqdiffusion --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" \
    --run-dir "$RUNS/vqd" --no-progress
stage "VideoGPT (VIPER)"
$DR train-video --model videogpt --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" \
    --run-dir "$RUNS/videogpt" --no-progress

stage "reward models"
$DR fit-reward --kind diffusion --video "$RUNS/vqd/model" --data "$DATA" --out "$RUNS/reward-entropy"
$DR fit-reward --kind diffusion --variant likelihood --video "$RUNS/vqd/model" --data "$DATA" \
    --out "$RUNS/reward-likelihood"
$DR fit-reward --kind viper --video "$RUNS/videogpt/model" --data "$DATA" --out "$RUNS/reward-viper"
$DR fit-reward --kind amp --data "$DATA" --out "$RUNS/reward-amp"
$DR fit-reward --kind rnd --data "$DATA" --out "$RUNS/reward-rnd"

stage "evaluate-reward (the motion reference is always added)"
$DR evaluate-reward --model entropy="$RUNS/reward-entropy" likelihood="$RUNS/reward-likelihood" \
    viper="$RUNS/reward-viper" amp="$RUNS/reward-amp" rnd="$RUNS/reward-rnd" \
    --data "$DATA" --out "$RUNS/evaluate-reward" --results "$RESULTS"
stage "done: $RUNS/evaluate-reward/reward_quality.md and $RESULTS"
