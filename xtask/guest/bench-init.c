/* The init of `cargo xtask bench boot`: the floor's /init (no network) and the new root's
 * /sbin/init in every other boot. It prints the uptime and what RAM holds, then powers off.
 * Built static with musl-gcc. */
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

/* The value of `key` in /proc/meminfo, in KiB; -1 when absent. */
static long meminfo(const char *key) {
    char line[256];
    long value = -1;
    size_t n = strlen(key);
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            sscanf(line + n + 1, "%ld", &value);
            break;
        }
    fclose(f);
    return value;
}

int main(void) {
    char uptime[64] = "?";
    FILE *f;
    /* The floor has nothing mounted; after a switch_root /proc is there already (EBUSY). */
    mkdir("/proc", 0555);
    mount("proc", "/proc", "proc", 0, NULL);
    f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%63s", uptime) != 1)
            strcpy(uptime, "?");
        fclose(f);
    }
    printf("netinit-bench: marker uptime=%s shmem-kib=%ld used-kib=%ld\n", uptime, meminfo("Shmem"),
           meminfo("MemTotal") - meminfo("MemAvailable"));
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
