#include <torch/torch.h>
int main(){ auto a=torch::ones({2}); std::cout<<torch::add(a,a)<<"\n"; }
