"""Independent PyTorch definitions of the registered architectures, written from the recipes in
the data folder's models/*.json (not from dsgq's C++). Module names equal the state_dict keys."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlockA(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option_a = stride != 1 or cin != planes
        self.pad = planes // 4

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.option_a else x
        return F.relu(out + sc)


class ResNetCifar(nn.Module):
    def __init__(self, depth):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, planes in enumerate([16, 32, 64], start=1):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlockA(cin, planes, 2 if (s > 1 and i == 0) else 1))
                cin = planes
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, x.size(3)).flatten(1)
        return self.linear(x)


def tf_same_conv(conv, x):
    """TensorFlow SAME padding for a square kernel: extra pixel on the bottom/right."""
    k, s = conv.kernel_size[0], conv.stride[0]
    def pads(n):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    t, b = pads(x.shape[2])
    l, r = pads(x.shape[3])
    return F.conv2d(F.pad(x, (l, r, t, b)), conv.weight, conv.bias, conv.stride, 0, 1, conv.groups)


class Stage8(nn.Module):
    def __init__(self, cin, ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, ch, 3, stride)
        self.bn1 = nn.BatchNorm2d(ch, eps=1e-3)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1)
        self.bn2 = nn.BatchNorm2d(ch, eps=1e-3)
        self.shortcut = nn.Conv2d(cin, ch, 1, stride) if stride != 1 else None

    def forward(self, x):
        y = F.relu(self.bn1(tf_same_conv(self.conv1, x)))
        y = self.bn2(tf_same_conv(self.conv2, y))
        sc = x if self.shortcut is None else tf_same_conv(self.shortcut, x)
        return F.relu(y + sc)


class ResNet8(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-3)
        self.layer1 = Stage8(16, 16, 1)
        self.layer2 = Stage8(16, 32, 2)
        self.layer3 = Stage8(32, 64, 2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(tf_same_conv(self.conv1, x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.avg_pool2d(x, 8).flatten(1))


class MobileNetV1(nn.Module):
    STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    CHANNELS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]

    def __init__(self, alpha=0.25):
        super().__init__()
        c = int(32 * alpha)
        self.conv1 = nn.Conv2d(3, c, 3, 2, bias=False)
        self.conv1_bn = nn.BatchNorm2d(c, eps=1e-3)
        for i, (s, co) in enumerate(zip(self.STRIDES, self.CHANNELS), start=1):
            co = int(co * alpha)
            setattr(self, f"conv_dw_{i}", nn.Conv2d(c, c, 3, s, groups=c, bias=False))
            setattr(self, f"conv_dw_{i}_bn", nn.BatchNorm2d(c, eps=1e-3))
            setattr(self, f"conv_pw_{i}", nn.Conv2d(c, co, 1, bias=False))
            setattr(self, f"conv_pw_{i}_bn", nn.BatchNorm2d(co, eps=1e-3))
            c = co
        self.conv_preds = nn.Linear(c, 1000)

    def forward(self, x):
        x = F.relu6(self.conv1_bn(tf_same_conv(self.conv1, x)))
        for i in range(1, 14):
            x = F.relu6(getattr(self, f"conv_dw_{i}_bn")(tf_same_conv(getattr(self, f"conv_dw_{i}"), x)))
            x = F.relu6(getattr(self, f"conv_pw_{i}_bn")(getattr(self, f"conv_pw_{i}")(x)))
        return self.conv_preds(x.mean((2, 3)))


def build(arch):
    if arch.startswith("resnet") and arch != "resnet8":
        return ResNetCifar(int(arch[6:]))
    if arch == "resnet8":
        return ResNet8()
    if arch == "mobilenet_v1_0.25":
        return MobileNetV1(0.25)
    raise ValueError(arch)
