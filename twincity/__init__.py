"""The composition root: the `twincity` command and the embedded mode. Not a service: the only
package allowed to import every service, because it starts them all."""
