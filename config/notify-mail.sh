#!/bin/sh
# notify-mail.sh — mails the outcome of a `blkvault run` (docs/ADMIN.md
# "Monitoring"). Use it as the job's notification command:
#
#   [report]
#   on-failure = ["/usr/local/share/blkvault/notify-mail.sh", "root"]
#   on-success = ["/usr/local/share/blkvault/notify-mail.sh", "backup-reports@example.com"]
#
# Arguments: the recipients (default: root). blkvault gives the outcome in
# BLKVAULT_* variables and as one JSON object on stdin (docs/CLI.md, "run");
# the mail has a one-line subject, the outcome, the job's last log lines on
# failure, and the JSON as it came. Sent with `sendmail -t` ($SENDMAIL, default
# /usr/sbin/sendmail: any MTA's, e.g. postfix, exim4, msmtp-mta, nullmailer).
# Exits with sendmail's status: blkvault logs a failed notification as a warning.
set -u

sendmail=${SENDMAIL:-/usr/sbin/sendmail}
[ "$#" -gt 0 ] || set -- root
to=$(printf '%s, ' "$@")
to=${to%, }
host=$(hostname 2>/dev/null || echo unknown)
job=${BLKVAULT_JOB:-unknown}
status=${BLKVAULT_STATUS:-unknown}
json=$(cat)

if [ "$status" = success ]; then
  subject="blkvault: job $job succeeded on $host"
else
  subject="blkvault: job $job FAILED on $host (exit status ${BLKVAULT_EXIT_STATUS:-?})"
fi

{
  printf 'To: %s\n' "$to"
  printf 'Subject: %s\n' "$subject"
  printf 'Content-Type: text/plain; charset=UTF-8\n'
  printf 'Auto-Submitted: auto-generated\n'
  printf '\n'
  printf 'Job:         %s\n' "$job"
  printf 'Host:        %s\n' "$host"
  printf 'Outcome:     %s\n' "${BLKVAULT_MESSAGE:-$status}"
  printf 'Exit status: %s\n' "${BLKVAULT_EXIT_STATUS:-?}"
  printf 'Generation:  %s\n' "${BLKVAULT_GENERATION:-none}"
  printf 'Devices:     %s\n' "${BLKVAULT_DEVICES:-}"
  printf 'Repository:  %s\n' "${BLKVAULT_REPO:-}"
  printf 'Config:      %s\n' "${BLKVAULT_CONFIG:-}"
  log=${BLKVAULT_LOG_FILE:-}
  if [ "$status" != success ] && [ -n "$log" ] && [ -r "$log" ]; then
    printf '\nThe last lines of %s for this job:\n' "$log"
    grep -F "job $job: " "$log" | tail -n 20
  fi
  printf '\nThe outcome as JSON:\n%s\n' "$json"
} | "$sendmail" -t -oi
