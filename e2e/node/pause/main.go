// Command pause is the real node's sandbox process: it holds a pod's namespaces open, reaps
// the zombies that PID-namespace sharing hands it, and exits on SIGINT or SIGTERM. It is
// ours because no registry (and so no upstream pause image) can be reached from CI.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
