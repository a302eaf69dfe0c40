#!/bin/busybox sh
# PID 1 of the Seawall lab guest (static busybox in an initramfs). It reads its network identity from
# the file "identity" on its FAT boot partition (parsed, never sourced), checks the records on its data
# disk (/dev/vdb), prints ONE machine-readable line on the serial console, serves its facts over HTTP
# and then appends numbered, checksummed 512-byte records to the data disk for ever.
# The record and console formats are described in seawall/lab/kvm_records.py.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /boot /www/cgi-bin
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Debian's kernel has these as modules; the .deb has no modules.dep, so the order is the dependency order.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk \
    failover net_failover virtio_net fat vfat nls_cp437 nls_ascii; do
  insmod "/lib/modules/$m.ko" 2>/dev/null
done

say() { echo "SEAWALL-GUEST host=${H:-none} ip=${IP:-none} last_record=${LAST:-0} status=$1" > /dev/console; }

i=0
while [ ! -b /dev/vda1 ] || [ ! -b /dev/vdb ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && { say no-disk; exec sleep 2147483647; }
  sleep 0.05
done
mount -t vfat -o ro /dev/vda1 /boot

# The first "key=" line wins; a value with anything but its expected characters is refused.
val() { sed -n "s/^$1=//p" /boot/identity 2>/dev/null | head -n 1 | tr -d '\r'; }
H=$(val hostname); A=$(val address); P=$(val prefix); G=$(val gateway)
STATUS=ready
case "$H" in '' | *[!a-z0-9-]*) STATUS=bad-identity ;; esac
case "$A" in '' | *[!0-9.]*) STATUS=bad-identity ;; esac
case "$G" in '' | *[!0-9.]*) STATUS=bad-identity ;; esac
case "$P" in '' | *[!0-9]*) STATUS=bad-identity ;; esac

if [ "$STATUS" = ready ]; then
  hostname "$H"
  ip link set lo up
  ip link set eth0 up
  ip addr add "$A/$P" dev eth0 && ip route add default via "$G" || STATUS=bad-identity
  IP="$A/$P"
fi

# One pass over the data disk: zero sectors become empty lines, which end the scan (awk exits, dd gets
# SIGPIPE), so only the written part is read. Prints "<last contiguous record> <1 if records follow a gap>".
# The number is compared as text: busybox awk reads "0000000010" as octal.
set -- $(dd if=/dev/vdb bs=64k 2>/dev/null | tr '\000' '\n' | awk '
  length($0) == 0 { exit }
  bad { trailing = 1; exit }
  substr($0, 1, 16) != sprintf("SWREC %010d", NR) || length($0) != 511 { bad = 1; next }
  { last = NR }
  END { print last + 0, trailing + 0 }')
LAST=${1:-0}
[ "${2:-0}" = 0 ] || STATUS=corrupt
# awk cannot hash: only the last record's checksum is checked here (a write torn by a crash).
if [ "$LAST" -gt 0 ]; then
  dd if=/dev/vdb of=/tmp/rec bs=512 skip=$((LAST - 1)) count=1 2>/dev/null
  want=$(head -c 49 /tmp/rec | tail -c 32)
  got=$(tail -c 462 /tmp/rec | md5sum)
  [ "${got%% *}" = "$want" ] || LAST=$((LAST - 1))
fi
BOOT_LAST=$LAST
echo "$LAST" > /run/last

READY=false
[ "$STATUS" = ready ] && READY=true
echo "\"hostname\":\"${H:-}\",\"ip\":\"${IP:-}\",\"gateway\":\"${G:-}\",\"boot_last_record\":$BOOT_LAST,\"status\":\"$STATUS\",\"ready\":$READY" > /run/facts
cat > /www/cgi-bin/health <<'CGI'
#!/bin/sh
read n < /run/last || n=0
printf 'Content-Type: application/json\r\n\r\n{%s,"last_record":%s}\n' "$(cat /run/facts)" "${n:-0}"
CGI
chmod 755 /www/cgi-bin/health
httpd -p 80 -h /www
say "$STATUS"

[ "$STATUS" = ready ] || exec sleep 2147483647
MAX=$(cat /sys/block/vdb/size)
mkfifo /run/tick
n=$LAST
while [ "$n" -lt "$MAX" ]; do
  n=$((n + 1))
  read up _ < /proc/uptime
  # Few forks per record (each costs milliseconds under TCG): printf is a shell builtin.
  body="n=$n host=$H ip=$A up=$up"
  printf '%-461s\n' "$body" > /tmp/body
  sum=$(md5sum < /tmp/body)
  printf 'SWREC %010d %s %-461s\n' "$n" "${sum%% *}" "$body" > /tmp/rec
  if dd if=/tmp/rec of=/dev/vdb bs=512 seek=$((n - 1)) count=1 conv=notrunc,fsync 2>/dev/null; then
    echo "$n" > /run/last.tmp && mv /run/last.tmp /run/last
  else
    n=$((n - 1))
    sleep 1
  fi
  # One record every 2 s, waited for by a builtin (read with a timeout on a FIFO nobody writes), not a
  # forked sleep: under TCG (no /dev/kvm) a guest's CPU is its records' forks. Measured with this
  # kernel, raw disks: 4.4 % of a core at one record a second with `sleep 1`, 3.6 % with the builtin
  # wait, 2.0 % at 2 s, 0.8 % with no record at all. The tests need records to keep coming, not a rate.
  read -t 2 _ <> /run/tick
done
exec sleep 2147483647
