//! A TCP forward from the host's loopback into the environment: how `kubectl` on the host
//! reaches the API server. The listening socket is made in the host's network namespace before
//! `tikv-env` enters the environment's; a socket keeps the namespace it was made in, so it keeps
//! accepting host connections, while each connection it forwards is opened inside.

use std::net::SocketAddr;

/// Accepts connections on `listener` forever and copies each both ways to a new connection to
/// `to`.
pub async fn serve(listener: std::net::TcpListener, to: SocketAddr) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (mut inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::warn!(%to, error = %e, "forward: cannot connect"),
            }
        });
    }
}
