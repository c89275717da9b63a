"""The guest clock follows the host's: a small script and systemd timer in the guest.

After the host sleeps or the VM is paused (a QEMU process stopped with SIGSTOP), the guest's
system clock runs behind by the pause. The virtual RTC keeps the host's time (QEMU
``-rtc base=utc,clock=host``; VirtualBox's RTC follows the host too), so every 10 s the
guest compares ``/sys/class/rtc/rtc0/since_epoch`` with its system clock and steps the clock
when they differ by more than a second. This needs no network (no NTP server is reachable on
many hosts) and works on both hypervisors. The RTC counts whole seconds, so the step waits
for the RTC's next tick and sets the clock then, within a few tens of milliseconds.

The same files are baked into the locally built image (``toolbox.guest.build``) and written
over SSH by provisioning (``toolbox.provision.steps``), so stock cloud images get them too.
"""

from __future__ import annotations

SCRIPT_PATH = "/usr/local/sbin/toolbox-clock-sync"
SERVICE_PATH = "/etc/systemd/system/toolbox-clock-sync.service"
TIMER_PATH = "/etc/systemd/system/toolbox-clock-sync.timer"
TIMER_UNIT = "toolbox-clock-sync.timer"
INTERVAL_SECONDS = 10
THRESHOLD_SECONDS = 1

SCRIPT = f"""#!/bin/sh
# Toolbox: step the system clock to the RTC (which follows the host) when they differ by
# more than {THRESHOLD_SECONDS} s, e.g. after the host slept or the VM was paused.
rtc=/sys/class/rtc/rtc0/since_epoch
[ -r "$rtc" ] || exit 0
then=$(cat "$rtc") || exit 0
now=$(date +%s)
diff=$((then - now))
[ "$diff" -gt {THRESHOLD_SECONDS} ] || [ "$diff" -lt -{THRESHOLD_SECONDS} ] || exit 0
# The RTC counts whole seconds: wait for its next tick (at most ~1 s), then set the clock.
i=0
while [ "$(cat "$rtc")" = "$then" ] && [ "$i" -lt 60 ]; do sleep 0.02; i=$((i + 1)); done
date -u -s "@$(cat "$rtc")" >/dev/null
echo "stepped the clock by ${{diff}} s to the RTC"
"""

SERVICE = """[Unit]
Description=Toolbox: step the clock to the RTC after a pause or host sleep
ConditionPathExists=/sys/class/rtc/rtc0/since_epoch

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/sbin/toolbox-clock-sync
"""

TIMER = f"""[Unit]
Description=Toolbox: compare the clock with the RTC every {INTERVAL_SECONDS} s

[Timer]
OnBootSec={INTERVAL_SECONDS}s
OnUnitInactiveSec={INTERVAL_SECONDS}s
AccuracySec=1s

[Install]
WantedBy=timers.target
"""

# (path, content, mode) of every file the mechanism needs.
FILES: tuple[tuple[str, str, int], ...] = (
    (SCRIPT_PATH, SCRIPT, 0o755),
    (SERVICE_PATH, SERVICE, 0o644),
    (TIMER_PATH, TIMER, 0o644),
)
