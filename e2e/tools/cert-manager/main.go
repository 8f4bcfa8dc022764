// cert-manager-controller: cert-manager's own controllers (from its published Go module,
// github.com/cert-manager/cert-manager) for the Issuers the examples use (SelfSigned, CA), in
// one process. cert-manager's `cmd/controller` module, which wraps these controllers with its
// flags, webhook client and leader election, is not on the Go module proxy; this wrapper is only
// the glue: a kubeconfig, the controllers by name, their informers.
package main

import (
	"context"
	"flag"
	"log"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// What cert-manager's controller runs by default for these issuer types (its ACME, Vault,
// Venafi, ingress and Gateway controllers left out).
const defaultControllers = "issuers,clusterissuers,certificates-trigger,certificates-issuing," +
	"certificates-key-manager,certificates-request-manager,certificates-readiness," +
	"certificates-revision-manager,certificaterequests-approver," +
	"certificaterequests-issuer-ca,certificaterequests-issuer-selfsigned"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	namespace := flag.String("namespace", "", "watch only this namespace (all when empty)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"where ClusterIssuers keep their Secrets")
	names := flag.String("controllers", defaultControllers, "controllers to run, comma separated")
	workers := flag.Int("workers", 5, "workers per controller")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		Namespace:          *namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: *clusterResourceNamespace,
		},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Second,
			CertificateRequestMaximumBackoffDuration: 32 * time.Second,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: 60},
	}
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		log.Fatalf("cert-manager-controller: %v", err)
	}
	var run []controller.Interface
	for _, name := range strings.Split(*names, ",") {
		construct, ok := controller.Known()[name]
		if !ok {
			log.Fatalf("cert-manager-controller: unknown controller %q", name)
		}
		c, err := construct(factory)
		if err != nil {
			log.Fatalf("cert-manager-controller: %s: %v", name, err)
		}
		run = append(run, c)
	}
	// The controllers registered their informers with the factory's shared ones: start them.
	shared, err := factory.Build()
	if err != nil {
		log.Fatalf("cert-manager-controller: %v", err)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	if shared.HTTP01ResourceMetadataInformersFactory != nil {
		shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	}
	log.Printf("cert-manager-controller: running %s", *names)
	var wg sync.WaitGroup
	for _, c := range run {
		wg.Add(1)
		go func(c controller.Interface) {
			defer wg.Done()
			if err := c.Run(*workers, ctx); err != nil {
				log.Printf("cert-manager-controller: %v", err)
				stop()
			}
		}(c)
	}
	wg.Wait()
}
