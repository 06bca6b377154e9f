// Command pause is the sandbox ("infra") process of every pod of the local cluster:
// it holds the pod's namespaces, reaps orphaned children when it is PID 1, and exits
// on SIGINT/SIGTERM. Same job as Kubernetes' C pause binary, built with the Go toolchain
// because no image registry is reachable here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
