"""InstaGAN (Mo, Cho, Shin, ICLR 2019): set generator and discriminator, the sequential mini-batch
training step, and sequential inference."""
