# Local PKI of the cluster (sourced): one CA, serving and client certificates, SA keys.
# ECDSA P-256 keys: quick to make, accepted by every component.

_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }

# cert <name> <subject> <extensions> : a certificate signed by the local CA.
_cert() {
  local name=$1 subj=$2 ext=$3
  [[ -f "$PKI/$name.crt" ]] && return 0
  _key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

_client() { _cert "$1" "$2" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"; }

make_pki() {
  mkdir -p "$PKI"
  if [[ ! -f "$PKI/ca.crt" ]]; then
    _key "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=modelrepo-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  _cert apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:$KUBE_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  _cert kubelet-serving "/CN=$NODE_NAME" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  _client admin "/O=system:masters/CN=modelrepo-admin"
  _client apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client"
  _client controller-manager "/CN=system:kube-controller-manager"
  _client scheduler "/CN=system:kube-scheduler"
  _client kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  _client kube-proxy "/CN=system:kube-proxy"
  _client coredns "/CN=modelrepo:coredns"
  if [[ ! -f "$PKI/sa.key" ]]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
}

# kubeconfig <file> <cert-name> : a kubeconfig for one component's client certificate.
make_kubeconfig() {
  local file=$1 name=$2
  cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: modelrepo
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$name.crt")
    client-key-data: $(base64 -w0 < "$PKI/$name.key")
contexts:
- name: modelrepo
  context: {cluster: modelrepo, user: $name}
current-context: modelrepo
KC
  chmod 600 "$file"
}
