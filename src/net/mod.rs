//! Where a node's byte streams come from: loopback TCP, or an in-process memory network (a scenario's in-process mode), either of them through the fault injector.

pub mod fault;

use fault::Faults;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A byte stream of either network.
pub trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncIo for T {}
pub type Stream = Box<dyn AsyncIo>;

/// Buffer of each direction of an in-memory connection.
const MEM_BUFFER: usize = 64 * 1024;

/// The network a node listens and dials on.
#[derive(Clone, Default)]
pub struct Net {
    mem: Option<Arc<MemNet>>,
    faults: Option<Arc<Faults>>,
}

impl Net {
    /// Loopback (or any) TCP.
    pub fn tcp() -> Net {
        Net::default()
    }

    /// The in-process network `m`.
    pub fn memory(m: Arc<MemNet>) -> Net {
        Net {
            mem: Some(m),
            faults: None,
        }
    }

    /// Connections this node dials go through `f`.
    pub fn with_faults(mut self, f: Arc<Faults>) -> Net {
        self.faults = Some(f);
        self
    }

    pub fn is_memory(&self) -> bool {
        self.mem.is_some()
    }

    pub fn faults(&self) -> Option<&Arc<Faults>> {
        self.faults.as_ref()
    }

    /// Connects without fault injection (clients of a node).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<Stream> {
        match &self.mem {
            Some(m) => m.connect(addr).await,
            None => {
                let t = TcpStream::connect(addr).await?;
                let _ = t.set_nodelay(true);
                Ok(Box::new(t))
            }
        }
    }

    /// Connects `local` to the server of `remote` at `addr`; the connection
    /// is policed by the fault table (the dialing side polices a link).
    pub async fn dial(&self, addr: SocketAddr, local: &str, remote: &str) -> io::Result<Stream> {
        if let Some(f) = &self.faults {
            if f.blocked(local, remote) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("partitioned from {remote}"),
                ));
            }
        }
        let s = self.connect(addr).await?;
        Ok(match &self.faults {
            Some(f) => Box::new(fault::Faulty::new(s, f.clone(), local, remote)),
            None => s,
        })
    }

    /// Listens on `addr` ("host:port").
    pub async fn bind(&self, addr: &str) -> io::Result<Listener> {
        match &self.mem {
            Some(m) => {
                let a: SocketAddr = addr
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
                m.bind(a).map(Listener::Mem)
            }
            None => TcpListener::bind(addr).await.map(Listener::Tcp),
        }
    }
}

/// A listening socket of either network.
pub enum Listener {
    Tcp(TcpListener),
    Mem(MemListener),
}

/// An accepted connection: TCP ones can move to another thread's runtime.
pub enum Accepted {
    Tcp(TcpStream),
    Mem(Stream),
}

impl Accepted {
    pub fn into_stream(self) -> Stream {
        match self {
            Accepted::Tcp(t) => {
                let _ = t.set_nodelay(true);
                Box::new(t)
            }
            Accepted::Mem(s) => s,
        }
    }
}

impl Listener {
    pub async fn accept(&mut self) -> io::Result<(Accepted, SocketAddr)> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(t, a)| (Accepted::Tcp(t), a)),
            Listener::Mem(l) => match l.rx.recv().await {
                Some((s, a)) => Ok((Accepted::Mem(s), a)),
                None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "network gone")),
            },
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Mem(l) => Ok(l.addr),
        }
    }
}

type Incoming = mpsc::Sender<(Stream, SocketAddr)>;

/// An in-process network: listeners by address, connections as in-memory
/// pipes carrying the same bytes (TLS, XML) TCP would.
#[derive(Default)]
pub struct MemNet {
    listeners: Mutex<HashMap<SocketAddr, Incoming>>,
    next_port: AtomicU16,
}

impl MemNet {
    pub fn new() -> Arc<MemNet> {
        Arc::new(MemNet {
            listeners: Mutex::new(HashMap::new()),
            next_port: AtomicU16::new(40000),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Incoming>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bind(self: &Arc<Self>, addr: SocketAddr) -> io::Result<MemListener> {
        let mut l = self.lock();
        let addr = if addr.port() == 0 {
            SocketAddr::new(addr.ip(), self.next_port.fetch_add(1, Ordering::Relaxed))
        } else {
            addr
        };
        if l.get(&addr).map(|tx| !tx.is_closed()).unwrap_or(false) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is taken"),
            ));
        }
        let (tx, rx) = mpsc::channel(1024);
        l.insert(addr, tx);
        Ok(MemListener {
            net: self.clone(),
            addr,
            rx,
        })
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Stream> {
        let tx = self.lock().get(&addr).cloned().ok_or_else(|| {
            io::Error::new(io::ErrorKind::ConnectionRefused, format!("{addr}: refused"))
        })?;
        let (a, b) = tokio::io::duplex(MEM_BUFFER);
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        let from = SocketAddr::from(([127, 0, 0, 1], port));
        tx.send((Box::new(b), from)).await.map_err(|_| {
            io::Error::new(io::ErrorKind::ConnectionRefused, format!("{addr}: refused"))
        })?;
        Ok(Box::new(a))
    }

    /// Whether something listens on `addr`.
    pub fn listening(&self, addr: SocketAddr) -> bool {
        self.lock()
            .get(&addr)
            .map(|tx| !tx.is_closed())
            .unwrap_or(false)
    }
}

/// A listener of the memory network; unbinds when dropped.
pub struct MemListener {
    net: Arc<MemNet>,
    addr: SocketAddr,
    rx: mpsc::Receiver<(Stream, SocketAddr)>,
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.rx.close();
        let mut l = self.net.lock();
        // Only our own entry: a listener bound since then keeps its.
        if l.get(&self.addr).map(|tx| tx.is_closed()).unwrap_or(false) {
            l.remove(&self.addr);
        }
    }
}
