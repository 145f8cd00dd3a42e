#!/usr/bin/env bash
# Build the pretrained Adroit reward models (pretrained/adroit-small) and their reward-quality record from
# nothing: expert videos made here by the planner (no downloads), held-out episodes of known quality, one codec,
# one VQ-Diffusion and one VideoGPT on door, hammer and pen pooled (small presets), the reward models, the expert
# train episodes AMP learns from in RL, and one evaluate-reward run over every reward, written to
# benchmarks/results/reward_quality/adroit-small.json and the README's Adroit reward-quality block.
# Re-running resumes: collect skips the episodes it has, the trainers resume their run directories.
#
# Cost on one CPU core: the planner takes 30-40 s per expert or noisy episode, and some seeds fail (retried with
# new ones), so the 150 + 60 expert and 90 noisy episodes are ~4 hours of one core (half on two: collect uses a
# worker per core); codec, video models and rewards ~1 hour; the evaluation of 240 episodes ~20 minutes.
# Usage: bash scripts/adroit_rewards.sh [DATA_DIR] [RUNS_DIR] [OUT_DIR]
# Beside other work: WORKERS=1 nice -n 10 bash scripts/adroit_rewards.sh
# Smaller runs (to check the wiring; README= leaves the README alone):
#   EPISODES=2 TEST_EPISODES=1 NOISY_EPISODES=1 PRESET=tiny RESULTS=runs/adroit-check.json README= \
#       bash scripts/adroit_rewards.sh data/adroit-check runs/adroit-check runs/adroit-check/pretrained
set -euo pipefail
DATA=${1:-data/adroit}
RUNS=${2:-runs/adroit}
OUT=${3:-pretrained/adroit-small}
DR=${DR:-.venv/bin/diffusion-reward}
PY=${PY:-.venv/bin/python}
EPISODES=${EPISODES:-50}            # train-split expert episodes per task (the paper's 150 in all)
TEST_EPISODES=${TEST_EPISODES:-20}  # held-out expert and random episodes per task
NOISY_EPISODES=${NOISY_EPISODES:-10}  # held-out episodes per task and noise level
PRESET=${PRESET:-small}
RESULTS=${RESULTS:-benchmarks/results/reward_quality/adroit-small.json}
README=${README-README.md}          # empty: do not write the README block
WORKERS=${WORKERS:-}              # collect's worker processes (empty: one per core)
W=${WORKERS:+--workers $WORKERS}
stage() { echo "[adroit_rewards] $(date -u +%H:%M:%S) $*"; }

stage "expert episodes ($EPISODES train + $TEST_EPISODES held-out per task; the planner, 30-40 s each)"
$DR collect --suite adroit --episodes "$EPISODES" --test-episodes "$TEST_EPISODES" --out "$DATA" $W --no-progress
stage "held-out random ($TEST_EPISODES per task) and noisy-expert ($NOISY_EPISODES per task and noise level) episodes"
$DR collect --suite adroit --policy random --episodes 0 --test-episodes "$TEST_EPISODES" --out "$DATA" $W --no-progress
$DR collect --suite adroit --policy noisy:0.1 noisy:0.3 noisy:1.0 --episodes 0 \
    --test-episodes "$NOISY_EPISODES" --out "$DATA" $W --no-progress
stage "train-split random episodes (AMP's negatives)"
$DR collect --suite adroit --policy random --episodes 5 --out "$DATA" $W --no-progress

stage "codec"
$DR train-codec --data "$DATA" --preset "$PRESET" --run-dir "$RUNS/codec" --no-progress
stage "VQ-Diffusion"
$DR train-video --model vqdiffusion --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" \
    --run-dir "$RUNS/vqd" --no-progress
stage "VideoGPT (VIPER)"
$DR train-video --model videogpt --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" \
    --run-dir "$RUNS/videogpt" --no-progress

stage "reward models"
# float32 pinned (--no-bf16), not 'auto': every benchmark cell must compute the same rewards on every machine
$DR fit-reward --kind diffusion --no-bf16 --video "$RUNS/vqd/model" --data "$DATA" --stats-episodes 10 \
    --out "$OUT/reward-entropy"
$DR fit-reward --kind diffusion --variant likelihood --no-bf16 --video "$RUNS/vqd/model" --data "$DATA" \
    --stats-episodes 10 --out "$RUNS/reward-likelihood"
$DR fit-reward --kind viper --no-bf16 --video "$RUNS/videogpt/model" --data "$DATA" --stats-episodes 10 \
    --out "$OUT/reward-viper"
# the baselines fitted offline, for the reward-quality table (in RL, AMP and RND train online from scratch)
$DR fit-reward --kind amp --data "$DATA" --seed 0 --out "$OUT/reward-amp"
$DR fit-reward --kind rnd --data "$DATA" --seed 0 --out "$OUT/reward-rnd"
stage "expert train episodes for AMP"
[ -e "$OUT/expert-data/manifest.json" ] || $PY scripts/expert_train_episodes.py "$DATA" "$OUT/expert-data"

stage "evaluate-reward (the motion reference is always added)"
$DR evaluate-reward --model entropy="$OUT/reward-entropy" likelihood="$RUNS/reward-likelihood" \
    viper="$OUT/reward-viper" amp="$OUT/reward-amp" rnd="$OUT/reward-rnd" \
    --data "$DATA" --out "$RUNS/evaluate-reward" --results "$RESULTS"
if [ -n "$README" ]; then
    $DR evaluate-reward --from-results "$RESULTS" --out docs/images/reward-quality-adroit --readme "$README" \
        --readme-block reward-quality-adroit
fi
stage "done: $OUT, $RUNS/evaluate-reward/reward_quality.md and $RESULTS"
