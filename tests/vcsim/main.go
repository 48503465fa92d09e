// Copyright: passthrough.gpu contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

// vcsim-gpu: govmomi's vSphere simulator (vcsim) with GPU passthrough on every host.
//
// Stock vcsim has no HostPciPassthruSystem, no HostGraphicsManager, no GPU among its PCI devices,
// no PCI lists in QueryConfigTarget and no host reboot, and it accepts VM changes ESXi refuses.
// This program runs the stock simulator and adds those (gpu_host.go, managers.go, envbrowser.go,
// rules.go, guard.go, cert.go). Built by build.sh; started by vcsim.py; see README.md.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
)

// maxHardwareVersion is the newest VM hardware version of an ESXi release, by API version prefix.
// UpgradeVM_Task in vcsim upgrades to esx.HardwareVersion, so it must be the release's newest.
func maxHardwareVersion(api string) string {
	for _, v := range []struct{ prefix, hw string }{
		{"8.", "vmx-20"}, {"7.0.2", "vmx-19"}, {"7.0.3", "vmx-19"}, {"7.0.1", "vmx-18"}, {"7.", "vmx-17"},
		{"6.7", "vmx-14"},
	} {
		if strings.HasPrefix(api, v.prefix) {
			return v.hw
		}
	}
	return esx.HardwareVersion
}

// writeFileAtomic makes the file appear complete or not at all, so a poller never reads half of it.
func writeFileAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vcsim-*")
	if err != nil {
		return err
	}
	if _, err = tmp.WriteString(content); err == nil {
		err = tmp.Close()
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func main() {
	ip := flag.String("ip", "127.0.0.1", "loopback address to listen on (pyVmomi skips certificate checks "+
		"for 127.0.0.1 when given no SSL context, so tests of validate_certs use another, e.g. 127.0.0.2)")
	port := flag.Int("port", 0, "TCP port (0: a free port)")
	certFile := flag.String("cert-file", "", "write the server's self-signed certificate (PEM) to this file")
	urlFile := flag.String("url-file", "", "write the SDK URL (no credentials) to this file once listening")
	requestLog := flag.String("request-log", os.Getenv("VCSIM_REQUEST_LOG"),
		"append each SOAP request's method name to this file, one per line (default: $VCSIM_REQUEST_LOG)")
	apiVersion := flag.String("api-version", "7.0.3.0", "vSphere API version to announce (pyVmomi needs 7.0.3.0 for Dynamic DirectPath)")
	username := flag.String("username", "user", "the only user name Login accepts")
	password := flag.String("password", "pass", "the only password Login accepts")
	esxMode := flag.Bool("esx", false, "simulate one standalone ESXi host instead of a vCenter")
	clusters := flag.Int("cluster", 1, "vCenter: clusters per datacenter")
	clusterHosts := flag.Int("cluster-host", 3, "vCenter: hosts per cluster")
	standalone := flag.Int("standalone-host", 1, "vCenter: standalone hosts per datacenter")
	vms := flag.Int("vm", 2, "VMs per host and per cluster resource pool")
	trace := flag.Bool("trace", false, "write SOAP traffic to stderr")
	moreA100 := flag.Int("more-a100", 0, "extra A100s per host, like an 8-GPU server (at most 5; for benchmarks)")
	noApply := flag.String("no-apply-now", "", "PCI ids (comma-separated) whose applyNow every host ignores, "+
		"as ESXi does for devices it cannot hot-apply: their passthrough changes are active only after a reboot")
	flag.Parse()
	for _, id := range strings.Split(*noApply, ",") {
		if id = strings.TrimSpace(id); id != "" {
			noApplyNow[id] = true
		}
	}
	if err := addA100s(*moreA100); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim-gpu:", err)
		os.Exit(2)
	}
	log.SetPrefix("vcsim-gpu: ")

	listenIP := net.ParseIP(*ip)
	if listenIP == nil || !listenIP.IsLoopback() {
		log.Fatalf("-ip %q: only loopback addresses", *ip)
	}

	model := simulator.VPX()
	if *esxMode {
		model = simulator.ESX()
	} else {
		model.Cluster, model.ClusterHost, model.Host = *clusters, *clusterHosts, *standalone
	}
	model.Machine = *vms
	model.ServiceContent.About.ApiVersion = *apiVersion
	if parts := strings.Split(*apiVersion, "."); len(parts) >= 3 {
		model.ServiceContent.About.Version = strings.Join(parts[:3], ".")
	}
	esx.HardwareVersion = maxHardwareVersion(*apiVersion)
	simulator.Trace = *trace

	if err := model.Create(); err != nil {
		log.Fatalf("creating the inventory: %s", err)
	}
	install()

	var logFile *os.File
	if *requestLog != "" {
		f, err := os.OpenFile(*requestLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatalf("request log: %s", err)
		}
		logFile = f
	}

	cert, certPEM, err := selfSigned(listenIP)
	if err != nil {
		log.Fatalf("certificate: %s", err)
	}
	if *certFile != "" {
		if err := writeFileAtomic(*certFile, string(certPEM)); err != nil {
			log.Fatalf("cert file: %s", err)
		}
	}
	model.Service.Listen = &url.URL{
		Host: net.JoinHostPort(listenIP.String(), strconv.Itoa(*port)),
		User: url.UserPassword(*username, *password), // not simulator.DefaultLogin: Login then checks both
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	server := model.Service.NewServer()
	// NewServer has started serving with its mux; the guard goes in front before anyone can know
	// the port (it is published below), so no request ever reaches the old handler.
	server.Config.Handler = &guard{next: server.Config.Handler, log: logFile}

	sdk := *server.URL
	sdk.User = nil
	if *urlFile != "" {
		if err := writeFileAtomic(*urlFile, sdk.String()+"\n"); err != nil {
			log.Fatalf("url file: %s", err)
		}
	}
	fmt.Printf("VCSIM_URL=%s\n", sdk.String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	// Remove deletes the datastore directories the model made under $TMPDIR. Not server.Close(): it
	// would wait for long polls (WaitForUpdatesEx) that clients may still hold open.
	model.Remove()
}
