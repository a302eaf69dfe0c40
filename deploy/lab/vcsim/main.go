// Command vcsim serves an empty vCenter (the govmomi simulator) over plain HTTP.
//
// The Seawall lab builds each site's inventory (datacenter, cluster, hosts, datastore on a directory of
// its own, networks, VMs) through the vSphere API after start, so the same set-up code works against
// this binary and against an upstream `vcsim` found on PATH. That is why the flags mirror upstream
// vcsim's (-l, -tls, -dc) rather than naming inventory objects.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("l", "127.0.0.1:8989", "Listen address (host:port) for the vSphere API and datastore files")
	useTLS := flag.Bool("tls", false, "Serve HTTPS with a self-signed certificate instead of plain HTTP")
	datacenters := flag.Int("dc", 0, "Number of generated datacenters (DC0, DC1, ...); the lab uses 0 and builds its own")
	flag.Parse()

	model := simulator.VPX()
	model.Datacenter = *datacenters
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: create model: %s", err)
	}
	defer model.Remove()

	model.Service.Listen = &url.URL{Host: *listen}
	if *useTLS {
		// An empty config makes the test server generate its self-signed localhost certificate.
		model.Service.TLS = new(tls.Config)
	}

	server := model.Service.NewServer()
	defer server.Close()

	// The lab's process manager waits on the API itself, but a line in the log helps a person.
	fmt.Printf("vcsim: serving %s (datacenters=%d)\n", server.URL, *datacenters)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("vcsim: stopping")
}
