//! Shared by the integration tests: running a test on every device.

/// `test_device!(body, name_cpu, name_cuda)`: two tests calling `body(device)`, on the CPU
/// and on CUDA device 0. Without CUDA (`tch::Cuda::is_available()` false) the CUDA test
/// passes and says on the terminal (not the captured output) that it skipped, and why.
#[macro_export]
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(tch::Device::Cpu);
        }

        #[test]
        fn $cuda() {
            if tch::Cuda::is_available() {
                $body(tch::Device::Cuda(0));
            } else {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: skipped (no CUDA device: tch::Cuda::is_available() is false)",
                    stringify!($cuda)
                );
            }
        }
    };
}
