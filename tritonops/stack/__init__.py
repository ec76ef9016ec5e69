"""The host stack: images, the compose stack, the gateway (HAProxy) and its check, a host's rendered files,
and the playbooks that deploy them. Imports tritonops.serving, tritonops.models and tritonops.settings."""
