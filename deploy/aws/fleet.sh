#!/bin/sh
# Launch, inspect and remove a fleet of drover workers on EC2 (CloudFormation + Auto Scaling).
#
#   deploy/aws/fleet.sh up 3      create (or resize) the fleet and wait until it is complete
#   deploy/aws/fleet.sh status    the stack's state and its instances
#   deploy/aws/fleet.sh down      delete the fleet and wait until it is gone
#
# Settings come from the environment:
#   DROVER_MASTER       HOST:PORT of the master, as the instances reach it     (required for up)
#   DROVER_VPC          VPC id                                                  (required for up)
#   DROVER_SUBNETS      comma-separated subnet ids, one per availability zone   (required for up)
#   DROVER_MASTER_CIDR  CIDR the master's address is in                         (default 10.0.0.0/8)
#   DROVER_TOKEN_PARAM  SSM SecureString with the join token                    (default /drover/join-token)
#   DROVER_TOKEN        when set, `up` stores it in DROVER_TOKEN_PARAM first
#   DROVER_STACK        stack name                                              (default drover-workers)
#   DROVER_FINGERPRINT  sha256:HEX of the master's key, and DROVER_PIN the same as sha256//BASE64
#                       (both from the master's join line; empty for a CA-signed master certificate)
#   DROVER_INSTANCE_TYPE, DROVER_AMI, DROVER_VOLUME_SIZE, DROVER_VOLUME_TYPE, DROVER_HTTPS_EGRESS (true|false)
#   AWS_REGION / AWS_PROFILE as for the aws CLI
set -eu

here=$(cd "$(dirname "$0")" && pwd)
TEMPLATE=$here/workers.yaml
STACK=${DROVER_STACK:-drover-workers}
TOKEN_PARAM=${DROVER_TOKEN_PARAM:-/drover/join-token}

die() {
  printf 'fleet: error: %s\n' "$*" >&2
  exit 1
}
say() { printf 'fleet: %s\n' "$*"; }
need() { [ -n "$2" ] || die "set $1 (see the top of $0)"; }

command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (https://aws.amazon.com/cli/)"

stack_status() {
  aws cloudformation describe-stacks --stack-name "$STACK" --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE
}

up() {
  count=${1:-}
  case "$count" in '' | *[!0-9]*) die "usage: $0 up N (N workers, a whole number)" ;; esac
  need DROVER_MASTER "${DROVER_MASTER:-}"
  need DROVER_VPC "${DROVER_VPC:-}"
  need DROVER_SUBNETS "${DROVER_SUBNETS:-}"
  port=${DROVER_MASTER##*:}
  case "$port" in '' | *[!0-9]*) die "DROVER_MASTER must be HOST:PORT, got $DROVER_MASTER" ;; esac
  if [ -n "${DROVER_TOKEN:-}" ]; then
    say "storing the join token in SSM parameter $TOKEN_PARAM"
    aws ssm put-parameter --name "$TOKEN_PARAM" --type SecureString --value "$DROVER_TOKEN" --overwrite >/dev/null ||
      die "could not store the token in SSM parameter $TOKEN_PARAM"
  fi
  set -- \
    "MasterAddress=$DROVER_MASTER" \
    "MasterPort=$port" \
    "MasterCidr=${DROVER_MASTER_CIDR:-10.0.0.0/8}" \
    "WorkerCount=$count" \
    "VpcId=$DROVER_VPC" \
    "SubnetIds=$DROVER_SUBNETS" \
    "TokenParameterName=$TOKEN_PARAM" \
    "AllowHttpsEgress=${DROVER_HTTPS_EGRESS:-true}"
  [ -n "${DROVER_INSTANCE_TYPE:-}" ] && set -- "$@" "InstanceType=$DROVER_INSTANCE_TYPE"
  [ -n "${DROVER_AMI:-}" ] && set -- "$@" "AmiId=$DROVER_AMI"
  if [ -n "${DROVER_FINGERPRINT:-}" ]; then
    need DROVER_PIN "${DROVER_PIN:-}"
    set -- "$@" "MasterFingerprint=$DROVER_FINGERPRINT" "MasterPublicKeyPin=$DROVER_PIN"
  fi
  [ -n "${DROVER_VOLUME_SIZE:-}" ] && set -- "$@" "RootVolumeSize=$DROVER_VOLUME_SIZE"
  [ -n "${DROVER_VOLUME_TYPE:-}" ] && set -- "$@" "RootVolumeType=$DROVER_VOLUME_TYPE"
  say "deploying stack $STACK with $count workers (this waits until it is complete)"
  aws cloudformation deploy \
    --stack-name "$STACK" \
    --template-file "$TEMPLATE" \
    --capabilities CAPABILITY_IAM \
    --no-fail-on-empty-changeset \
    --parameter-overrides "$@" ||
    die "deploy failed; see: aws cloudformation describe-stack-events --stack-name $STACK"
  say "stack $STACK is $(stack_status); the workers join as they boot (master> wait $count)"
}

down() {
  if [ "$(stack_status)" = NONE ]; then
    say "no stack $STACK: nothing to delete"
    return 0
  fi
  say "deleting stack $STACK (this waits until it is gone)"
  aws cloudformation delete-stack --stack-name "$STACK" || die "could not delete stack $STACK"
  aws cloudformation wait stack-delete-complete --stack-name "$STACK" ||
    die "stack $STACK did not delete cleanly; see: aws cloudformation describe-stack-events --stack-name $STACK"
  say "stack $STACK deleted"
}

status() {
  st=$(stack_status)
  if [ "$st" = NONE ]; then
    say "no stack $STACK"
    return 0
  fi
  say "stack $STACK: $st"
  group=$(aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='AutoScalingGroup'].OutputValue" --output text)
  [ -n "$group" ] && [ "$group" != None ] || return 0
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$group" \
    --query 'AutoScalingGroups[0].Instances[].[InstanceId,AvailabilityZone,LifecycleState,HealthStatus]' --output text
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up N | down | status" ;;
esac
