// Command cert-manager-controller runs cert-manager's own controllers, from the packages of the
// github.com/cert-manager/cert-manager module, for the project's tests: the issuers and clusterissuers
// controllers with the CA and SelfSigned issuers, the certificaterequests approver and its CA and SelfSigned
// signers, and the certificates controllers (trigger, key manager, request manager, issuing, readiness,
// revision manager). cert-manager's own `main` lives in a nested module the module proxy does not serve,
// so this is the smallest wiring of the same pieces, as cmd/controller/app does it: one context factory,
// each registered controller built from it and run, then the informer factories started. No webhook (the
// CRDs are installed without their conversion webhook), no ACME, no leader election, no metrics server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// The controllers: each registers itself with controller.Register.
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
	// The issuer types the issuers controllers check: each registers itself with issuer.RegisterIssuer.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the kubeconfig of the API server")
	clusterResources := flag.String("cluster-resource-namespace", "cert-manager",
		"the namespace of the Secrets ClusterIssuers name (their CA)")
	workers := flag.Int("workers", 2, "workers per controller")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(*kubeconfig, *clusterResources, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, clusterResources string, workers int) error {
	root, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root = logf.NewContext(root, logf.Log.WithName("cert-manager"))
	g, root := errgroup.WithContext(root)

	factory, err := controller.NewContextFactory(root, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: clusterResources},
		CertificateOptions: controller.CertificateOptions{
			// cert-manager's defaults: a request that failed is retried after an hour, then longer.
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return err
	}
	ctx, err := factory.Build()
	if err != nil {
		return err
	}
	known := controller.Known()
	names := make([]string, 0, len(known))
	for name := range known {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		iface, err := known[name](factory)
		if err != nil {
			return fmt.Errorf("building controller %s: %w", name, err)
		}
		klog.InfoS("starting controller", "controller", name)
		g.Go(func() error { return iface.Run(workers, root) })
	}
	ctx.SharedInformerFactory.Start(root.Done())
	ctx.KubeSharedInformerFactory.Start(root.Done())
	ctx.HTTP01ResourceMetadataInformersFactory.Start(root.Done())
	klog.InfoS("cert-manager controllers started", "controllers", names)
	err = g.Wait()
	ctx.KubeSharedInformerFactory.Shutdown()
	ctx.SharedInformerFactory.Shutdown()
	ctx.HTTP01ResourceMetadataInformersFactory.Shutdown()
	return err
}
